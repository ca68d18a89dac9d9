"""Zoo cases today's detectors get wrong, each with what memwatch reported instead.

Keys are ``group/slug`` (``bugs/x`` and its twin ``fixed/x`` share a slug). ``bugs/...``
entries are misses (not found with the expected kind, or found but not named);
``fixed/...`` and ``healthy/...`` entries are FALSE ALARMS (the reason starts with
"FALSE ALARM" and names the kind raised). tests/zoo/test_zoo.py marks each listed case
``xfail(strict=True)``: when a detector starts getting a case right, its test XPASSes and
fails the suite until the entry is removed here. Reasons were written from
``python benchmarks/zoo.py`` output on today's detectors (each case in its own forked child).

Both zoo helpers' cases are listed: zoo-b's files (OOM, optimizer, hooks, cycles, caches,
zero_grad, frameworks) join samples/zoo when its branch is merged; until then their
entries simply match no case.
"""

from __future__ import annotations

KNOWN_MISSES: dict[str, str] = {
    # ---- zoo-a: graph retention and grad mode -------------------------------------------------
    # growing graphs held where the holder scan does not follow them
    "bugs/loss_dict_per_key_running_sum": (
        "not found: the running sums are dict values (`epoch_loss[key] += loss[key]`, a dict "
        "local to main()); graph-accumulation follows named tensors, not values inside a dict; "
        "reported nothing"
    ),
    "bugs/tensor_statistic_updated_with_grad": (
        "not found: the growing graph is held by `model[2].tensor_s._tensor`, a plain helper "
        "object inside a module, updated from a forward hook; reported nothing"
    ),
    "bugs/darts_rnn_cell_hidden_list_not_repackaged": (
        "not found: the carried state is a list of per-layer tensors, rebuilt by the model every "
        "step and passed through a repackage_hidden that does not detach; reported nothing"
    ),
    "bugs/wgan_gp_epoch_loss_without_item": (
        "wrong kind: reported graph-retained-in-inference (error, `D`), as on its fixed twin; the "
        "graph growing in the dict value `log['d_loss']` (critic loss with the gradient "
        "penalty's double-backward graph) is not found"
    ),
    "bugs/hooks_keep_activations_eval_in_train_mode": (
        "not found: forward hooks append 4 activations every 5 steps to `activations` lists on "
        "the Linear layers (evaluation in training mode, no backward pops them): stepwise growth "
        "on CPU without --track-tensors; reported nothing"
    ),
    # one step's graph or outputs kept alive (not growing)
    "bugs/module_keeps_last_activity": (
        "graph-kept-across-step is not a kind yet: `self.activity` keeps the last forward's "
        "output and graph until the next forward overwrites it; reported nothing"
    ),
    "bugs/engine_state_output_kept_until_next_iteration": (
        "not found: last step's (loss, y_pred, y) are held by `engine.state.output` (an "
        "attribute of an attribute of the Engine) while the next process_function runs; "
        "lingering-step-locals looks at locals only; reported nothing"
    ),
    "bugs/several_losses_each_backward_retain_graph": (
        "not found: every backward of the step (the last one too) passes retain_graph=True, so "
        "the step's graph stays alive until the loop rebinds the losses: kept one step, not "
        "growing; reported nothing"
    ),
    "bugs/gan_generator_loss_retain_graph": (
        "wrong kind: reported graph-retained-in-inference (error, `netD`), as on its fixed twin; "
        "the graph kept by `loss_g.backward(retain_graph=True)` lives one step (not growing), so "
        "no retain-graph-leak"
    ),
    # false alarms
    "fixed/gan_generator_loss_retain_graph": (
        "FALSE ALARM: graph-retained-in-inference (error) on `netD`: three D forwards per step, "
        "all of them used by the two backward passes"
    ),
    "fixed/wgan_gp_epoch_loss_without_item": (
        "FALSE ALARM: graph-retained-in-inference (error) on `D`: every critic forward feeds "
        "d_loss.backward() or the gradient penalty's autograd.grad (create_graph, retain_graph)"
    ),
    # ---- zoo-b: everything else (reasons by zoo-b, checked against zoo-a's run of both sets) ----
    "bugs/zero_grad_per_microbatch": (
        "not found: zero_grad runs between the backward passes of one accumulation (bwd, "
        "zero_grad, bwd, ... , step); grad-reset-before-step only checks zero_grad directly "
        "before step; reported nothing"
    ),
    "bugs/zero_grad_outside_accumulation_if": (
        "not found: zero_grad every batch, step every 4th (two optimizers); the 3 discarded "
        "backward passes are not recognised; reported nothing"
    ),
    "bugs/accelerate_zero_grad_at_start_of_accumulate": (
        "not found: accelerate's wrapped zero_grad really zeroes only on the sync micro-step, "
        "wiping 3 accumulated backward passes before the last one; reported nothing"
    ),
    "bugs/zero_grad_missing_in_trainer_step": (
        "grad-never-reset is not a kind yet: Trainer.train_step never zeroes the LoRA "
        "gradients; reported nothing"
    ),
    "bugs/zero_grad_once_per_epoch": (
        "grad-never-reset is not a kind yet: model.zero_grad() once per epoch, 20 steps add up "
        "their gradients; reported nothing"
    ),
    "bugs/module_method_alias_ref_cycle": (
        "tensors-in-gc-cycle is not a kind yet: `self.which_act = self.relu_act` makes each "
        "trial's model (2 MiB buffer) a cycle; 10 models alive until gc; reported nothing"
    ),
    "bugs/forward_hook_closure_captures_self": (
        "tensors-in-gc-cycle is not a kind yet: a forward hook closure capturing self makes "
        "each restart's model a cycle; reported nothing"
    ),
    "bugs/data_storage_parent_backref_cycle": (
        "tensors-in-gc-cycle is not a kind yet: each batch's Storage holds `_parent=self`, 40 "
        "batches alive until gc; reported lingering-step-locals (warning: h, agg, loss) and "
        "host-memory-growth (warning, no location)"
    ),
    "bugs/lightning_training_step_outputs_keep_graph": (
        "not found: every training_step loss (with its graph) appended to LightningModule "
        "attribute self.training_step_outputs (list of dicts), cleared at epoch end; steps come "
        "from Lightning's closure; reported nothing"
    ),
    "bugs/lightning_validation_outputs_never_cleared": (
        "not found: self.validation_step_outputs grows at each validation (every 10 batches), "
        "never cleared; the holder scan does not reach the LightningModule's list (the false "
        "grad-reset-before-step error it also got is gone since closures are understood)"
    ),
    "bugs/trainer_compute_metrics_keeps_eval_logits": (
        "not found: transformers Trainer.evaluation_loop concatenates every eval batch's logits "
        "(3 evaluations x 12 batches x 8x32x2000 floats) inside one evaluation, with no "
        "optimizer step during it; reported nothing"
    ),
    "bugs/lru_cache_on_method_keeps_instances": (
        "not found: @functools.cache on a method keeps every BatchFeatures instance and its "
        "256x256 tensors (+512 KiB/step) in the cache (a C object); reported nothing"
    ),
    "bugs/memoize_cache_keyed_by_tensor_args": (
        "not found as memory-growth: the memoize decorator's closure-cell dict gains a 1 MiB "
        "tensor per step; reported lingering-step-locals (warning: out, loss) and "
        "host-memory-growth (warning, no location)"
    ),
    "bugs/state_dict_copy_kept_every_epoch": (
        "not found: a deepcopy of state_dict appended to local list `history` every epoch "
        "(every 8 steps, ~1.1 MiB each): stepwise growth; reported nothing"
    ),
    "bugs/log_metrics_keeps_detached_codes": (
        "not found as memory-growth: `logs['z'].append(z.detach()[::10])` in helper "
        "_log_metrics keeps a view of every step's 1 MiB codes in a defaultdict local to "
        "main(); reported lingering-step-locals (warning: z, x_hat, loss)"
    ),
    "bugs/dataset_memoization_host_ram_growth": (
        "found but not named: host-memory-growth (warning) has no location or holder for the "
        "Dataset's self._memo dict of numpy arrays (zoo-b saw it missed entirely after other "
        "cases in one process; each case now runs in its own forked child)"
    ),
    "fixed/per_sample_gradients_python_loop": (
        "FALSE ALARM: grad-reset-before-step (error): torch.func.grad (vmap) counted as a "
        "backward, then zero_grad, then p.grad assigned by hand before step (the bug twin gets "
        "the same false error besides its correct unbatched-forward)"
    ),
    "fixed/data_storage_parent_backref_cycle": (
        "FALSE ALARM: lingering-step-locals (warning) `h`, `agg`, `loss` from the previous step "
        "alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
    "fixed/memoize_cache_keyed_by_tensor_args": (
        "FALSE ALARM: lingering-step-locals (warning) `out`, `loss` from the previous step "
        "alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
    "fixed/log_metrics_keeps_detached_codes": (
        "FALSE ALARM: lingering-step-locals (warning) `z`, `x_hat`, `loss` from the previous "
        "step alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
}

#: Verdicts that rest on host RSS (the allocator's reuse of freed memory), which changes
#: from run to run: marked ``xfail(strict=False)`` until host growth is attributed by a
#: census instead of RSS. Same key format and reason style as KNOWN_MISSES.
UNSTABLE: dict[str, str] = {
    "healthy/batch_size_rampup_curriculum": (
        "FALSE ALARM, some runs: host-memory-growth (warning) while the batch ramps up; "
        "whether RSS keeps rising depends on malloc reuse"
    ),
}
