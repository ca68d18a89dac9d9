"""memwatch's pytest plugin: options, the ``memwatch`` marker and fixture, a summary table.

Glue only: the checks are pure functions in ``memwatch.checks`` and the watch with its
assertion helpers is ``memwatch.testing.CheckedWatch``. The plugin is loaded in every pytest
run of anyone who installs memwatch, so it stays inert unless used: at import and in the
always-registered hooks (options, marker help, a glance at the collected items) it neither
imports torch nor installs anything; the per-test hooks live on ``_Runner``, registered
only when a collected test carries the marker, requests the fixture, or ``--memwatch`` asks
for every test to be watched.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memwatch import checks
from memwatch.errors import MemwatchError
from memwatch.units import parse_size

if TYPE_CHECKING:
    from memwatch.records import Finding
    from memwatch.testing import CheckedWatch

MARKER = "memwatch"
_RUNNER_NAME = "memwatch-runner"


@dataclass(frozen=True)
class Settings:
    """The plugin's options, resolved once from the command line and the ini file."""

    watch_all: bool
    directory: Path | None
    top: int


class MarkerError(ValueError):
    """A ``memwatch`` marker with arguments the checks cannot use (fails that test only)."""


@dataclass(frozen=True)
class MarkerSpec:
    """The thresholds of one test: the marker's keywords, defaults filled in."""

    max_step_growth: str | int | None = checks.DEFAULT_TOLERANCE
    max_peak: str | int | None = None
    forbid: tuple[str, ...] | None = None
    warmup: int = checks.DEFAULT_WARMUP

    @classmethod
    def from_marker(cls, marker: pytest.Mark | None) -> MarkerSpec:
        if marker is None:
            return cls()
        if marker.args:
            raise MarkerError(
                f"@pytest.mark.{MARKER} takes keywords only "
                "(max_step_growth=..., max_peak=..., forbid=[...], warmup=...)"
            )
        try:
            spec = cls(**marker.kwargs)
        except TypeError:
            known = ", ".join(f.name for f in cls.__dataclass_fields__.values())
            raise MarkerError(
                f"@pytest.mark.{MARKER}({', '.join(marker.kwargs)}): unknown keyword; "
                f"it takes {known}"
            ) from None
        try:
            for size in (spec.max_step_growth, spec.max_peak):
                if size is not None:
                    parse_size(size)
            return cls(
                spec.max_step_growth,
                spec.max_peak,
                checks.validate_kinds(spec.forbid),
                int(spec.warmup),
            )
        except (MemwatchError, TypeError, ValueError) as exc:
            raise MarkerError(f"@pytest.mark.{MARKER}: {exc}") from None


@dataclass(frozen=True)
class WatchedTest:
    """What one watched test did, in plain values (travels from xdist workers in reports)."""

    nodeid: str
    steps: int
    metric: str
    peak: int | None
    growth_per_step: float | None
    findings: tuple[str, ...]
    failed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchedTest:
        return cls(**{**data, "findings": tuple(data["findings"])})


SETTINGS_KEY = pytest.StashKey[Settings]()
WATCH_KEY = pytest.StashKey["CheckedWatch"]()
SECTION_KEY = pytest.StashKey[tuple[str, WatchedTest]]()


# -- hooks that are always registered (cheap: no torch, no per-test work) -------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memwatch", "memwatch: tensor memory checks for training steps")
    group.addoption(
        "--memwatch",
        action="store_true",
        default=None,
        help="watch every test's tensor memory and print the tests with the highest peak, "
        "growth per step and findings at the end (ini: memwatch)",
    )
    group.addoption(
        "--memwatch-dir",
        default=None,
        metavar="DIR",
        help="also write each watched test's run file to DIR, for `memwatch report`/`tui` "
        "(ini: memwatch_dir)",
    )
    group.addoption(
        "--memwatch-top",
        type=int,
        default=None,
        metavar="N",
        help="how many tests the --memwatch summary lists (default 10; ini: memwatch_top)",
    )
    parser.addini("memwatch", "watch every test (as --memwatch)", type="bool", default=False)
    parser.addini("memwatch_dir", "directory for run files (as --memwatch-dir)", default="")
    parser.addini(
        "memwatch_top", "tests in the --memwatch summary (as --memwatch-top)", default="10"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker_help())
    settings = _settings(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.watch_all:
        _runner(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(_uses_memwatch(item) for item in items):
        _runner(config)


@pytest.fixture(name="memwatch")
def memwatch_fixture(request: pytest.FixtureRequest) -> Iterator[CheckedWatch]:
    """A memwatch watch around the test body, with ``assert_no_leaks``/``assert_peak_below``.

    Steps end at ``optimizer.step()`` or at ``memwatch.step()``. A ``memwatch`` marker on
    the test sets the warm-up and adds its checks after the test body.
    """
    runner = _runner(request.config)
    watch = runner.new_watch(request.node)
    watch.brief_failures = True  # the full report goes to the test's "memwatch" section
    request.node.stash[WATCH_KEY] = watch
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()


def marker_help() -> str:
    """The marker's ``--markers`` line, built from the checks' signatures and docstrings."""
    params = ", ".join(
        f"{name}={getattr(MarkerSpec, name)!r}" for name in MarkerSpec.__dataclass_fields__
    )
    doc = "; ".join(
        f"{name}: {(inspect.getdoc(fn) or '').splitlines()[0]}"
        for name, fn in checks.MARKER_CHECKS.items()
    )
    return (
        f"{MARKER}({params}): watch this test's training steps and fail it when a check does "
        f"not hold. {doc}; warmup: first steps not judged. Sizes accept '1MiB', '2GB' or bytes; "
        "None switches a size check off. forbid=None means error findings of "
        f"{', '.join(checks.DEFAULT_FORBID)}; an explicit list fails on any severity."
    )


# -- the per-test machinery, registered only when something uses it --------------------------
class _Runner:
    """Per-test hooks: watch the test, run the marker's checks, report, tabulate."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[SETTINGS_KEY]
        self.results: list[WatchedTest] = []

    def new_watch(self, item: pytest.Item) -> CheckedWatch:
        from memwatch.testing import CheckedWatch

        spec = _spec(item)
        out = None
        if self.settings.directory is not None:
            out = self.settings.directory / (_slug(item.nodeid) + ".db")
        # force: the file at a test's name is this suite's own run of that test, from an
        # earlier session (memwatch still never replaces a file that is not a run file).
        return CheckedWatch(
            out,
            script=item.nodeid,
            argv=(),
            warmup=spec.warmup,
            store=out is not None,
            force=True,
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        marker = item.get_closest_marker(MARKER)
        observe_only = marker is None and WATCH_KEY not in item.stash
        if observe_only and (not self.settings.watch_all or _another_watch_is_active()):
            # --memwatch only observes: a watch already running (a session fixture's) is
            # left alone rather than failing the test on a second watch.
            return (yield)
        spec = _spec(item)
        own = None if WATCH_KEY in item.stash else self.new_watch(item)
        if own is not None:
            # Under --memwatch alone, a memwatch() the test opens itself takes over.
            own.yields_to_nested = observe_only
            own.start()
        try:
            result = yield
        except BaseException:
            # The test's own error is what the user must see: reporting must not mask it.
            with contextlib.suppress(Exception):
                self._finish(item, own or item.stash.get(WATCH_KEY, None), spec, None, True)
            raise
        failure = self._finish(
            item, own or item.stash.get(WATCH_KEY, None), spec, marker, failed=False
        )
        if failure:
            pytest.fail(failure, pytrace=False)
        return result

    def _finish(
        self,
        item: pytest.Item,
        watch: CheckedWatch | None,
        spec: MarkerSpec,
        marker: pytest.Mark | None,
        failed: bool,
    ) -> str | None:
        """Stop the watch, run the marker's checks; the failure text, if a check failed."""
        if watch is None:
            return None
        watch.stop(exit_status=1 if failed else None)
        if watch.yields_to_nested and not watch.steps:
            # --memwatch alone: the test's own watch (assert_no_leaks, memwatch()) took over;
            # its steps and findings are what this test did.
            watch = _recorded_successor(watch) or watch
        if marker is not None and not failed:
            growth = spec.max_step_growth
            judged = checks.measure(watch.steps, spec.warmup).growth_per_step is not None
            if "max_step_growth" not in marker.kwargs and not judged:
                # The default growth limit judges only tests with steps to judge; asked
                # for explicitly, too few steps fail the test ("cannot judge").
                growth = None
            failures, findings, m = watch.check(
                warmup=spec.warmup,
                max_step_growth=growth,
                max_peak=spec.max_peak,
                forbid=spec.forbid,
            )
        else:
            failures, findings, m = [], watch.findings_for(spec.warmup), None
        m = m or checks.measure(watch.steps, spec.warmup)
        if failures:
            text = checks.describe(failures, findings, m)
        elif watch.failure is not None:  # an assertion helper failed
            text = watch.failure
        else:
            text = _with_findings(checks.summary_line(m, findings), findings)
        if watch.steps:
            text += f"\n\n{m.metric} by step:\n" + "\n".join(checks.step_lines(watch.steps, m))
        memory = WatchedTest(
            item.nodeid,
            m.steps,
            m.metric,
            m.peak,
            m.growth_per_step,
            tuple(f.kind for f in findings),
            bool(failures),
        )
        item.stash[SECTION_KEY] = (text, memory)
        return checks.describe(failures, findings, m, brief=True) if failures else None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "call" and SECTION_KEY in item.stash:
            text, memory = item.stash[SECTION_KEY]
            report.sections.append((MARKER, text))
            report.memwatch = memory.to_dict()  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "memwatch", None)
        if self.settings.watch_all and report.when == "call" and isinstance(data, dict):
            self.results.append(WatchedTest.from_dict(data))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.settings.watch_all:
            return
        rows = [r for r in self.results if r.steps or r.findings]
        terminalreporter.write_sep("=", "memwatch: tests by memory")
        if not rows:
            terminalreporter.write_line("no watched test ran a training step")
            return
        for line in summary_table(rows, self.settings.top):
            terminalreporter.write_line(line)


def summary_table(rows: list[WatchedTest], top: int) -> list[str]:
    """The worst ``top`` tests: failed or with findings first, then growth, then peak."""
    from memwatch.units import format_size

    def badness(r: WatchedTest) -> tuple[int, int, float, int]:
        return (int(r.failed), len(r.findings), r.growth_per_step or 0.0, r.peak or 0)

    ranked = sorted(rows, key=badness, reverse=True)[: max(0, top)]
    width = min(48, max(len(r.nodeid) for r in ranked))
    lines = [f"{'test':<{width}}  {'steps':>5}  {'peak':>10}  {'growth/step':>12}  findings"]
    for r in ranked:
        name = r.nodeid if len(r.nodeid) <= width else "..." + r.nodeid[-(width - 3) :]
        growth = (
            "n/a"
            if r.growth_per_step is None
            else format_size(round(r.growth_per_step), signed=True)
        )
        lines.append(
            f"{name:<{width}}  {r.steps:>5}  {format_size(r.peak):>10}  {growth:>12}  "
            f"{', '.join(dict.fromkeys(r.findings)) or '-'}"
        )
    metrics = sorted({r.metric for r in ranked})
    lines.append(f"(memory = {' / '.join(metrics)}; growth after warm-up)")
    return lines


def _with_findings(head: str, findings: list[Finding]) -> str:
    from memwatch.report.text import finding_lines

    lines = [head]
    for i, finding in enumerate(findings, 1):
        lines.append("")
        lines.extend(finding_lines(finding, i))
    return "\n".join(lines)


def _recorded_successor(watch: CheckedWatch) -> CheckedWatch | None:
    """The last watch the test opened itself that recorded steps, as a ``CheckedWatch``."""
    from memwatch.testing import CheckedWatch

    for successor in reversed(watch.successors):
        if successor.steps and isinstance(successor, CheckedWatch):
            return successor
    return None


def _spec(item: pytest.Item) -> MarkerSpec:
    """The test's thresholds; a bad marker fails this test alone, with the reason only."""
    __tracebackhide__ = True
    try:
        return MarkerSpec.from_marker(item.get_closest_marker(MARKER))
    except MarkerError as exc:
        message = str(exc)
    # Failing outside the except block: inside it, pytest would print the MarkerError as
    # the Failed's context ("During handling of the above exception"), the message twice.
    pytest.fail(message, pytrace=False)


def _runner(config: pytest.Config) -> _Runner:
    runner = config.pluginmanager.get_plugin(_RUNNER_NAME)
    if runner is None:
        runner = _Runner(config)
        config.pluginmanager.register(runner, _RUNNER_NAME)
    assert isinstance(runner, _Runner)
    return runner


def _another_watch_is_active() -> bool:
    from memwatch.session import active_watch

    return active_watch() is not None


def _uses_memwatch(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None or MARKER in getattr(
        item, "fixturenames", ()
    )


def _settings(config: pytest.Config) -> Settings:
    watch_all = config.getoption("memwatch")
    if watch_all is None:
        watch_all = bool(config.getini("memwatch"))
    directory = config.getoption("memwatch_dir") or str(config.getini("memwatch_dir") or "")
    top = config.getoption("memwatch_top")
    if top is None:
        try:
            top = int(str(config.getini("memwatch_top")))
        except ValueError:
            raise pytest.UsageError("memwatch_top in the ini file must be a number") from None
    return Settings(bool(watch_all), Path(directory) if directory else None, int(top))


def _slug(nodeid: str) -> str:
    """A file name for a test's run: readable, and unique per node id (parametrized ids
    that differ only in characters a file name cannot hold get different hashes)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120] or "test"
    digest = hashlib.sha1(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable}-{digest}"
