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
    # training-state smells (proposed kind train-mode-smell)
    "bugs/validation_leaves_model_in_eval_every_k": (
        "train-mode-smell is not a kind yet: after the every-10-iterations validation the "
        "encoders stay in eval mode (Dropout, BatchNorm) for the rest of the epoch's training; "
        "reported nothing"
    ),
    "bugs/train_function_never_calls_train_mode": (
        "train-mode-smell is not a kind yet: test() leaves the model in eval mode and train() "
        "never calls model.train(), so epochs 2-4 train with Dropout off; reported nothing"
    ),
    "bugs/detect_anomaly_left_on_in_helpers": (
        "train-mode-smell is not a kind yet: torch.autograd.set_detect_anomaly(True) at import "
        "stays on for the whole training run; reported nothing"
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
    "healthy/mc_dropout_predictions_no_grad": (
        "FALSE ALARM: eval-mode-missing (warning) on `model`: Monte Carlo dropout deliberately "
        "switches only the Dropout layers back to train under no_grad (BatchNorm stays in eval)"
    ),
    # ---- zoo-b: everything else (reasons by zoo-b, checked against zoo-a's run of both sets) ----
    "bugs/forward_hook_registered_every_forward": (
        "hooks-accumulate is not a kind yet: forward() registers a pre-hook (closure holding a "
        "tensor) on 3 layers per call, only the last handle is removed; reported nothing"
    ),
    "bugs/fault_injector_hooks_never_removed": (
        "hooks-accumulate is not a kind yet: a FaultInjector every 5 steps registers forward "
        "hooks and drops the handles (8 hooks per layer at the end); reported nothing"
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
    # ---- zoo-c: the holdout set (samples/zoo/HOLDOUT.txt; fresh, never tuned on) ----------
    # growing graphs held where the holder scan does not look
    "bugs/metric_list_state_used_as_loss": (
        "not found: the growing graphs are list entries of a metric helper object's state "
        "(`model._dice.scores`, appended in update(), reset at epoch end); reported nothing"
    ),
    "bugs/trainer_update_stats_average_meter_tensor": (
        "not found: the graph grows in `AverageMeter.sum` inside a nested OrderedDict on the "
        "trainer (`trainer.stats['train']['Loss/total'].sum += val * n`); reported nothing"
    ),
    "bugs/trainer_metrics_history_defaultdict": (
        "not found: per-step loss tensors with graphs appended to lists inside a "
        "defaultdict(list) attribute `trainer.history`; reported nothing"
    ),
    "bugs/trainer_class_attribute_loss_list": (
        "not found: the loss tensors are appended to a CLASS attribute list (`Trainer.losses`, "
        "shared by the instances, reached through `self.losses`); reported nothing"
    ),
    "bugs/lightning_callback_collects_train_step_preds": (
        "not found: a Lightning Callback in trainer.callbacks appends `outputs['preds']` (the "
        "un-detached logits Lightning passes through) to `self.preds` for the epoch; "
        "reported nothing"
    ),
    "bugs/episode_runner_actions_keep_graph": (
        "wrong kind: reported graph-retained-in-inference (error, `q`); the graphs growing in "
        "the replay buffer (`buffer.episodes[i].data['actions']`, lists in objects in a list) "
        "are not found"
    ),
    # kinds that exist today, missed on a new shape
    "bugs/transformers_bert_predict_without_eval": (
        "not found: predict() runs a tiny BertForSequenceClassification under torch.no_grad() "
        "with the model in training mode (hidden/attention dropout active) every 5 steps; "
        "reported nothing"
    ),
    "bugs/episode_logger_stats_never_cleared": (
        "not found: a Logger's defaultdict(list) gains a 512 KiB numpy array per step (host "
        "memory); reported lingering-step-locals (warning: mac_out) instead"
    ),
    # proposed kinds: no detector yet
    "bugs/batch_loop_keeps_last_step_output": (
        "graph-kept-across-step is not a kind yet: `loop.batch_output` keeps the last step's "
        "loss and output (with grad_fn) until the next step overwrites it; reported nothing"
    ),
    "bugs/feature_extractor_hooks_persist": (
        "hooks-accumulate is not a kind yet: every FeatureExtractor registers 2 forward hooks "
        "on the encoder and never removes them, each old hook keeps appending detached outputs; "
        "reported nothing (no memory-growth either)"
    ),
    "bugs/frozen_batchnorm_reset_by_train": (
        "train-mode-smell is not a kind yet: BatchNorm put in eval by freeze_encoder() is back "
        "in training mode after each model.train() while its parameters stay frozen; "
        "reported nothing"
    ),
    "bugs/relevance_hooks_cycle_keeps_inputs": (
        "tensors-in-gc-cycle is not a kind yet: module -> _forward_hooks -> bound method -> "
        "hook -> module cycles hold the stored input/output tensors until gc; reported nothing"
    ),
    # false alarms on the holdout's controls
    "fixed/episode_runner_actions_keep_graph": (
        "FALSE ALARM: graph-retained-in-inference (warning, `q`): the runner's forwards run with "
        "grad enabled and their outputs are detached at once (freed, no pile-up)"
    ),
    "fixed/episode_logger_stats_never_cleared": (
        "FALSE ALARM: lingering-step-locals (warning) `mac_out` (512 KiB) from the previous step "
        "alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
    "healthy/swa_averaged_model_update_bn": (
        "FALSE ALARM: eval-mode-missing (warning, `update_bn`): torch.optim.swa_utils.update_bn "
        "runs BatchNorm in training mode under no_grad on purpose, to recompute its statistics"
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
