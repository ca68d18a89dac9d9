"""Memory assertions for tests: a watch with assertion helpers, and ``assert_no_leaks``.

``CheckedWatch`` is the one class behind the pytest ``memwatch`` fixture and
:func:`assert_no_leaks`, so both judge a run the same way (through ``memwatch.checks``) and
fail with the same message: each check that did not hold, then every finding with its
kind, variable, file:line, bytes per step and fix. Works without pytest (plain
``AssertionError``); under pytest, ``__tracebackhide__`` points the failure at the test line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from memwatch import checks
from memwatch.analysis import AnalysisInput, analyze
from memwatch.checks import DEFAULT_TOLERANCE, DEFAULT_WARMUP, Failure
from memwatch.errors import MemwatchError
from memwatch.records import Finding, sort_findings
from memwatch.session import Watch

__all__ = ["CheckedWatch", "assert_matches_baseline", "assert_no_leaks"]


class CheckedWatch(Watch):
    """A ``Watch`` that can assert on what it recorded.

    Unlike a plain watch it keeps everything in memory (``store=False``) and counts live
    tensor bytes on CPU (``track_tensors=True``), so growth and peak are judged on tensor
    memory on a CPU too (on CUDA the allocator counts them anyway). Tensors created before
    the watch started are not counted: they do not grow, but they are missing from the peak.

    The assertion helpers end the watch first (closing the last step and running the
    final analysis), so call them after the training loop.
    """

    def __init__(
        self,
        *args: Any,
        store: bool = False,
        warmup: int = DEFAULT_WARMUP,
        track_tensors: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, store=store, warmup=warmup, track_tensors=track_tensors, **kwargs)
        self.failure: str | None = None
        """The full report of the last failed assertion (the pytest plugin shows it)."""
        self.brief_failures = False
        """Keep assertion messages to one line per finding: set by the pytest fixture, whose
        test report carries the full report in its "memwatch" section."""

    def findings_for(self, warmup: int | None = None) -> list[Finding]:
        """The findings, judged with ``warmup`` steps ignored (default: the watch's own)."""
        if warmup is None or warmup == self.warmup:
            return self.findings
        # Detectors are pure: judging the recorded steps again costs milliseconds.
        return sort_findings(
            analyze(
                AnalysisInput(
                    steps=tuple(self.steps),
                    events=tuple(self.events),
                    info=self.info,
                    warmup=warmup,
                    final=True,
                )
            )
        )

    def check(
        self,
        *,
        warmup: int | None = None,
        max_step_growth: str | int | None = DEFAULT_TOLERANCE,
        max_peak: str | int | None = None,
        forbid: Iterable[str] | None = None,
    ) -> tuple[list[Failure], list[Finding], checks.Measure]:
        """End the watch and run the checks; ``None`` switches a size check off.

        Returns the failures (empty when every check held), the findings and the measure.
        """
        kinds = checks.validate_kinds(forbid)
        self.stop()
        warmup = self.warmup if warmup is None else int(warmup)
        findings = self.findings_for(warmup)
        steps = self.steps
        results = [checks.forbid(steps, findings, kinds=kinds)]
        if max_step_growth is not None:
            results.append(
                checks.max_step_growth(steps, findings, limit=max_step_growth, warmup=warmup)
            )
        if max_peak is not None:
            results.append(checks.max_peak(steps, findings, limit=max_peak))
        failures = [r for r in results if r is not None]
        return failures, findings, checks.measure(steps, warmup)

    def assert_no_leaks(
        self,
        *,
        warmup: int | None = None,
        tolerance: str | int = DEFAULT_TOLERANCE,
        forbid: Iterable[str] | None = None,
    ) -> None:
        """Fail if a forbidden finding was made or tensor memory grew beyond ``tolerance``/step.

        Args:
            warmup: first steps not judged (default: the watch's, 3).
            tolerance: growth per step after warm-up still accepted (``"64KiB"``, bytes).
            forbid: finding kinds that fail the test, at any severity (default: error
                findings of the graph-leak kinds, ``checks.DEFAULT_FORBID``).
        """
        __tracebackhide__ = True
        failures, findings, m = self.check(
            warmup=warmup, max_step_growth=tolerance, max_peak=None, forbid=forbid
        )
        self._raise_if(failures, findings, m)

    def assert_peak_below(self, size: str | int) -> None:
        """Fail if tensor memory peaked above ``size`` (``"512MiB"``, bytes) in any step."""
        __tracebackhide__ = True
        failures, findings, m = self.check(max_step_growth=None, max_peak=size, forbid=())
        self._raise_if(failures, findings, m)

    def _raise_if(
        self, failures: list[Failure], findings: list[Finding], m: checks.Measure
    ) -> None:
        __tracebackhide__ = True
        if failures:
            self.failure = checks.describe(failures, findings, m)
            brief = self.brief_failures
            raise AssertionError(
                checks.describe(failures, findings, m, brief=True) if brief else self.failure
            )


def assert_no_leaks(
    step_fn: Callable[[], object],
    steps: int = 10,
    warmup: int = DEFAULT_WARMUP,
    tolerance: str | int = DEFAULT_TOLERANCE,
    *,
    forbid: Sequence[str] | None = None,
    max_peak: str | int | None = None,
) -> CheckedWatch:
    """Run ``step_fn`` ``steps`` times under a watch and fail if memory leaks across calls.

    Each call is one training step, marked after it returns (``optimizer.step()`` inside
    does not end steps here). Fails with the findings (variable, file:line, bytes per step,
    fix) when a ``forbid`` kind is found (default: error findings of the graph-leak kinds),
    when tensor memory grows more than ``tolerance`` per step after ``warmup`` steps, or
    when it peaks above ``max_peak``. Returns the watch, for further inspection.

    Example:
        def step():
            loss = model(x).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step()

        assert_no_leaks(step, steps=8, warmup=2)
    """
    __tracebackhide__ = True
    if steps < warmup + 2:
        raise MemwatchError(
            f"assert_no_leaks needs at least warmup + 2 = {warmup + 2} steps to judge growth, "
            f"got steps={steps}"
        )
    checks.validate_kinds(forbid)
    name = getattr(step_fn, "__qualname__", None) or repr(step_fn)
    watch = CheckedWatch(script=name, argv=(), warmup=warmup, manual_steps=True)
    with watch:
        for _ in range(steps):
            step_fn()
            watch.step()
    failures, findings, m = watch.check(
        warmup=warmup, max_step_growth=tolerance, max_peak=max_peak, forbid=forbid
    )
    watch._raise_if(failures, findings, m)
    return watch


#: Set to 1 to (re)write the baselines ``assert_matches_baseline`` compares with.
UPDATE_BASELINE_ENV = "MEMWATCH_UPDATE_BASELINE"


def assert_matches_baseline(
    run: Watch | str | os.PathLike[str],
    baseline: str | os.PathLike[str],
    tolerance: str | float = "5%",
    *,
    fail_on_findings: str | None = "error",
    update: bool | None = None,
) -> None:
    """Fail when ``run`` (a finished watch, or a run file) uses more memory than the
    ``baseline`` JSON (written by ``memwatch baseline`` or by this helper) beyond
    ``tolerance``, or has findings at ``fail_on_findings`` (None: ignore findings).

    A missing baseline fails with how to create it: run the test once with
    ``MEMWATCH_UPDATE_BASELINE=1`` (or ``update=True``) to write it from this run.
    The same comparison as ``memwatch check RUN --baseline BASE``.
    """
    __tracebackhide__ = True
    from memwatch.analysis.compare import RunProfile, check, format_value, parse_tolerance
    from memwatch.analysis.compare import profile as run_profile

    if isinstance(run, Watch):
        if run.active:
            run.stop()
        script = run.info.script if run.info is not None else "run"
        current = run_profile(script, run.steps, run.findings, run.categories)
    else:
        from memwatch.commands.compare import load_profile

        _, current = load_profile(str(run))
    path = Path(baseline)
    if update is None:
        update = os.environ.get(UPDATE_BASELINE_ENV, "") not in ("", "0")
    if update:
        path.write_text(json.dumps(current.to_dict(), indent=2, default=str) + "\n")
        return
    if not path.exists():
        raise AssertionError(
            f"memwatch: no baseline at {path}; run once with {UPDATE_BASELINE_ENV}=1 to "
            "write it from this run"
        )
    try:
        base = RunProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise MemwatchError(f"{path}: not a readable baseline ({exc})") from None
    level = tolerance if isinstance(tolerance, float) else parse_tolerance(str(tolerance))
    lines = []
    for gate in check(current, base, level):
        if not gate.ok:
            m = gate.metric
            lines.append(
                f"  {m.label}: {format_value(m, gate.value)} > limit "
                f"{format_value(m, gate.limit)} (baseline {format_value(m, gate.baseline)})"
            )
    if fail_on_findings is not None:
        limit = {"error": 0, "warning": 1, "info": 2}[fail_on_findings]
        for f in current.findings:
            if {"error": 0, "warning": 1, "info": 2}.get(str(f.get("severity")), 9) <= limit:
                lines.append(f"  finding: {f.get('severity')} [{f.get('kind')}] {f.get('title')}")
    if lines:
        raise AssertionError(
            f"memwatch: memory exceeds the baseline {path} (tolerance {level * 100:g}%):\n"
            + "\n".join(lines)
        )
