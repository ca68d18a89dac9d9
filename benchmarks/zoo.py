"""The zoo benchmark: how much of the zoo's publicly reported bugs memwatch finds and names.

    OMP_NUM_THREADS=1 python benchmarks/zoo.py             # the per-case table and recall
    OMP_NUM_THREADS=1 python benchmarks/zoo.py --json      # the same as JSON on stdout
    OMP_NUM_THREADS=1 python benchmarks/zoo.py lstm gan    # only cases whose key has a word

``samples/zoo/`` holds reproductions of memory and training-loop bugs that people reported
publicly (``bugs/``), each bug's corrected twin (``fixed/``, same slug) and correct programs
that look risky (``healthy/``). Every file carries a literal ``ZOO = {...}`` dict, read here
with ``ast.literal_eval`` (never imported), saying which finding kind it should raise
(``expect``; ``None`` for fixed and healthy files) and how the culprit is named.

Each file runs under ``with memwatch(store=False) as mw:`` via
``runpy.run_path(path, run_name="__main__")``, in a child forked from this process (torch
already imported, so no start-up cost; no case sees what an earlier one left behind), and
``mw.findings`` is judged:

* found: a finding of kind ``expect`` (or one of ``also_ok``) with severity warning or error;
* named: found, and ``culprit`` appears in that finding's variable, title or detail, or the
  source line at its location contains ``line`` (a bug case that gives neither counts as
  named when found);
* false alarm: any warning or error on a ``fixed/`` or ``healthy/`` file.

``tests/zoo/test_zoo.py`` asserts the same per case (misses listed in
``tests/zoo/known_misses.py``); this script prints the numbers (samples/zoo/README.md).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib.util
import io
import json
import os
import runpy
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
ZOO_DIR = REPO / "samples" / "zoo"
GROUPS = ("bugs", "fixed", "healthy")
PROBLEM_SEVERITIES = ("warning", "error")

#: Kinds memwatch reports today (README's table).
EXISTING_KINDS = frozenset(
    {
        "graph-accumulation",
        "graph-retained-in-inference",
        "eval-mode-missing",
        "retain-graph-leak",
        "lingering-step-locals",
        "oom-retry-loop",
        "memory-growth",
        "host-memory-growth",
        "microbatch-graph-accumulation",
        "grad-reset-before-step",
        "cudnn-benchmark-dynamic-shapes",
        "unbatched-forward",
        "rank-imbalance",
    }
)
#: Kinds proposed by issue 12 for bugs no existing kind fits (detectors come later).
PROPOSED_KINDS = frozenset(
    {
        "stale-optimizer-params",
        "hooks-accumulate",
        "tensors-in-gc-cycle",
        "graph-kept-across-step",
        "grad-never-reset",
        "train-mode-smell",
    }
)
#: The module each ``frameworks`` name needs; a case whose module is missing is skipped.
FRAMEWORK_MODULES = {
    "lightning": "lightning",
    "transformers": "transformers",
    "accelerate": "accelerate",
}
ZOO_KEYS = frozenset({"expect", "also_ok", "culprit", "line", "frameworks"})


class ZooFormatError(ValueError):
    """A zoo file whose header or ``ZOO`` dict does not follow samples/zoo/README.md."""


class CaseCrashed(RuntimeError):
    """The case's program raised (or exited non-zero): a broken case, never a miss."""


@dataclass(frozen=True)
class Case:
    """One zoo file and what it claims about itself (its ``ZOO`` dict)."""

    group: str  # "bugs", "fixed" or "healthy"
    slug: str
    path: Path
    expect: str | None
    also_ok: tuple[str, ...] = ()
    culprit: str | None = None
    line: str | None = None
    frameworks: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``group/slug``: unique (a bug and its fixed twin share the slug)."""
        return f"{self.group}/{self.slug}"

    @property
    def accepted_kinds(self) -> tuple[str, ...]:
        return (self.expect, *self.also_ok) if self.expect else ()

    def missing_frameworks(self) -> list[str]:
        """The frameworks this case needs that are not installed here."""
        return [
            name
            for name in self.frameworks
            if importlib.util.find_spec(FRAMEWORK_MODULES.get(name, name)) is None
        ]


@dataclass(frozen=True)
class Reported:
    """One warning or error memwatch raised on a case (what the table shows)."""

    kind: str
    severity: str
    variable: str | None
    title: str
    location: str | None


@dataclass(frozen=True)
class Outcome:
    """A case judged: what memwatch reported and whether that counts as found/named."""

    key: str
    group: str
    slug: str
    expect: str | None
    found: bool
    named: bool
    false_alarm: bool
    reported: tuple[Reported, ...]
    seconds: float
    info_kinds: tuple[str, ...] = field(default=())
    memwatch_warnings: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """What the test asserts: a bug found and named, a control clean."""
        if self.group == "bugs":
            return self.found and self.named
        return not self.false_alarm


# -- reading the zoo ---------------------------------------------------------------------------
def read_zoo_dict(path: Path) -> dict[str, Any]:
    """The file's module-level ``ZOO = {...}`` literal, never importing the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "ZOO"
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ZooFormatError(f"{path}: ZOO is not a literal ({exc})") from None
            if not isinstance(value, dict):
                raise ZooFormatError(f"{path}: ZOO is not a dict")
            return value
    raise ZooFormatError(f"{path}: no module-level ZOO = {{...}}")


def load_case(path: Path) -> Case:
    group = path.parent.name
    if group not in GROUPS:
        raise ZooFormatError(f"{path}: not under one of {GROUPS}")
    zoo = read_zoo_dict(path)
    unknown = set(zoo) - ZOO_KEYS
    if unknown:
        raise ZooFormatError(f"{path}: unknown ZOO keys {sorted(unknown)}")
    if "expect" not in zoo:
        raise ZooFormatError(f"{path}: ZOO has no 'expect'")
    expect = zoo["expect"]
    if group == "bugs":
        if not isinstance(expect, str) or expect not in EXISTING_KINDS | PROPOSED_KINDS:
            raise ZooFormatError(f"{path}: expect {expect!r} is not a known or proposed kind")
    elif expect is not None:
        raise ZooFormatError(f"{path}: a {group} case must have expect None")
    return Case(
        group=group,
        slug=path.stem,
        path=path,
        expect=expect,
        also_ok=tuple(zoo.get("also_ok", ())),
        culprit=zoo.get("culprit"),
        line=zoo.get("line"),
        frameworks=tuple(zoo.get("frameworks", ())),
    )


def discover(root: Path = ZOO_DIR) -> list[Case]:
    """Every ``*.py`` under ``root/{bugs,fixed,healthy}``, sorted by group then slug."""
    cases = []
    for group in GROUPS:
        for path in sorted((root / group).glob("*.py")):
            cases.append(load_case(path))
    return cases


# -- running one case --------------------------------------------------------------------------
@contextlib.contextmanager
def _isolated(path: Path) -> Iterator[None]:
    """Run a case as its own ``__main__`` without leaking its global torch state into the next."""
    import torch

    saved_argv = sys.argv
    saved_grad = torch.is_grad_enabled()
    saved_anomaly = torch.is_anomaly_enabled()
    saved_dtype = torch.get_default_dtype()
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    saved_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.enabled)
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = saved_argv
        torch.set_grad_enabled(saved_grad)
        torch.autograd.set_detect_anomaly(saved_anomaly)
        torch.set_default_dtype(saved_dtype)
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.enabled = saved_cudnn
        gc.collect()


def _source_line(file: str, line: int) -> str:
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _names_culprit(case: Case, finding: Any) -> bool:
    if case.culprit is None and case.line is None:
        return True
    if case.culprit is not None:
        text = " ".join(str(t) for t in (finding.variable, finding.title, finding.detail) if t)
        if case.culprit in text:
            return True
    loc = finding.location
    if case.line is not None and loc is not None:
        return case.line in _source_line(loc.file, loc.line)
    return False


def judge(
    case: Case,
    findings: Sequence[Any],
    seconds: float = 0.0,
    memwatch_warnings: Sequence[str] = (),
) -> Outcome:
    """Whether ``findings`` (memwatch ``Finding`` objects) find/name the case or false-alarm."""
    problems = [f for f in findings if f.severity in PROBLEM_SEVERITIES]
    matching = [f for f in problems if f.kind in case.accepted_kinds]
    found = bool(matching)
    named = any(_names_culprit(case, f) for f in matching)
    return Outcome(
        key=case.key,
        group=case.group,
        slug=case.slug,
        expect=case.expect,
        found=found,
        named=named,
        false_alarm=case.group != "bugs" and bool(problems),
        reported=tuple(
            Reported(
                kind=f.kind,
                severity=f.severity,
                variable=f.variable,
                title=f.title,
                location=f"{Path(f.location.file).name}:{f.location.line}" if f.location else None,
            )
            for f in problems
        ),
        seconds=round(seconds, 3),
        info_kinds=tuple(sorted({f.kind for f in findings if f.severity == "info"})),
        memwatch_warnings=tuple(memwatch_warnings),
    )


def _run_here(case: Case) -> dict[str, Any]:
    """Run the case's program in this process under memwatch: its findings as JSON dicts.

    Raises ``CaseCrashed`` when the program itself fails (a broken case is not a miss).
    Its stdout, stderr and warnings are swallowed (they are the program's, not the
    benchmark's); memwatch's own warnings (an internal error switching a part off) are kept.
    """
    from memwatch import memwatch

    sink = io.StringIO()
    with (
        _isolated(case.path),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            with memwatch(store=False, script=str(case.path)) as mw:
                runpy.run_path(str(case.path), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise CaseCrashed(f"{case.key} exited {exc.code}\n{sink.getvalue()}") from None
        except Exception as exc:
            raise CaseCrashed(f"{case.key} raised {exc!r}\n{sink.getvalue()}") from exc
        findings = [f.to_dict() for f in mw.findings]
    own = sorted({str(w.message) for w in caught if str(w.message).startswith("memwatch")})
    return {"findings": findings, "memwatch_warnings": own}


_warmed_up = False


def _warm_up() -> None:
    """Import and exercise memwatch once in this process before the first fork: what is
    loaded lazily (collection, detectors, source parsing) is then inherited by every child
    instead of being loaded again in each (seconds per case otherwise)."""
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    import torch

    from memwatch import memwatch

    sink = io.StringIO()
    with (
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with memwatch(store=False, script="zoo-warm-up") as mw:
            for _ in range(6):
                loss = model(torch.randn(3, 4)).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    model(torch.randn(3, 4))
        mw.findings  # noqa: B018  (the final analysis pass ran on exit; touch the result)


def _run_forked(case: Case) -> dict[str, Any]:
    """``_run_here`` in a child forked from this process, so every case starts from the same
    state: nothing one case leaves behind (freed heap, RSS, torch globals, gc garbage)
    changes what memwatch sees in the next one, whatever order the cases run in."""
    _warm_up()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running the parent's exit hooks
        status = 0
        try:
            os.close(read_fd)
            try:
                payload: dict[str, Any] = _run_here(case)
            except CaseCrashed as exc:
                payload = {"crashed": str(exc)}
            except BaseException as exc:
                payload = {"crashed": f"{case.key}: the harness failed: {exc!r}"}
            with os.fdopen(write_fd, "w", encoding="utf-8") as out:
                json.dump(payload, out, default=str)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as inp:
        text = inp.read()
    _, wait_status = os.waitpid(pid, 0)
    if not text:
        raise CaseCrashed(f"{case.key}: the case's process died (wait status {wait_status})")
    payload = json.loads(text)
    if "crashed" in payload:
        raise CaseCrashed(payload["crashed"])
    return payload


def run_case(case: Case, isolate: bool = True) -> Outcome:
    """Run the case under memwatch and judge what it found.

    ``isolate`` (the default where ``os.fork`` exists) runs each case in a forked child of
    this process: torch stays imported (no start-up cost per case), and no case sees
    another's leftovers. ``isolate=False`` runs it in this very process.
    Raises ``CaseCrashed`` when the program itself fails.
    """
    from memwatch.records import Finding

    start = time.perf_counter()
    forked = isolate and hasattr(os, "fork")
    payload = _run_forked(case) if forked else _run_here(case)
    findings = [Finding.from_dict(f) for f in payload["findings"]]
    return judge(case, findings, time.perf_counter() - start, payload["memwatch_warnings"])


# -- the table ---------------------------------------------------------------------------------
def summarize(outcomes: Sequence[Outcome], skipped: Sequence[str] = ()) -> dict[str, Any]:
    bugs = [o for o in outcomes if o.group == "bugs"]
    controls = [o for o in outcomes if o.group != "bugs"]
    found = sum(o.found for o in bugs)
    named = sum(o.named for o in bugs)
    alarms = [o.key for o in controls if o.false_alarm]
    false_warnings = sum(
        1 for o in controls for r in o.reported if r.severity == "warning"
    )  # findings, not cases
    false_errors = sum(1 for o in controls for r in o.reported if r.severity == "error")
    return {
        "bugs": len(bugs),
        "found": found,
        "named": named,
        "recall_found": round(found / len(bugs), 3) if bugs else None,
        "recall_named": round(named / len(bugs), 3) if bugs else None,
        "controls": len(controls),
        "fixed": sum(o.group == "fixed" for o in controls),
        "healthy": sum(o.group == "healthy" for o in controls),
        "false_alarm_cases": alarms,
        "false_warnings": false_warnings,
        "false_errors": false_errors,
        "skipped": list(skipped),
        "seconds": round(sum(o.seconds for o in outcomes), 1),
    }


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"


def render_table(outcomes: Sequence[Outcome], summary: dict[str, Any]) -> str:
    rows = [("case", "expect", "found", "named", "reported (warning/error)", "s")]
    for o in outcomes:
        reported = ", ".join(
            f"{r.kind}({r.severity}{': ' + r.variable if r.variable else ''})" for r in o.reported
        )
        if o.group == "bugs":
            found, named = ("yes" if o.found else "NO"), ("yes" if o.named else "NO")
        else:
            found, named = "-", "-"
            reported = f"FALSE ALARM: {reported}" if o.false_alarm else "clean"
        rows.append(
            (o.key, o.expect or "-", found, named, reported or "nothing", f"{o.seconds:.1f}")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    s = summary
    lines += [
        "",
        f"bugs: {s['bugs']}   found {_pct(s['found'], s['bugs'])}"
        f"   named {_pct(s['named'], s['bugs'])}",
        f"controls: {s['controls']} (fixed {s['fixed']}, healthy {s['healthy']})"
        f"   false alarms {_pct(len(s['false_alarm_cases']), s['controls'])}"
        f" ({s['false_errors']} errors, {s['false_warnings']} warnings)",
        f"time: {s['seconds']:.1f} s of case runs",
    ]
    if s["skipped"]:
        lines.append(f"skipped (framework not installed): {', '.join(s['skipped'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("words", nargs="*", help="only cases whose group/slug contains a word")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR, help="the zoo directory")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every case in this process (default: each in a forked child)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write JSON (to stdout, or to PATH) instead of the table",
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    cases = [c for c in discover(args.zoo) if not args.words or any(w in c.key for w in args.words)]
    outcomes: list[Outcome] = []
    skipped: list[str] = []
    crashed: list[str] = []
    for case in cases:
        if case.missing_frameworks():
            skipped.append(case.key)
            continue
        try:
            outcomes.append(run_case(case, isolate=not args.in_process))
        except CaseCrashed as exc:
            crashed.append(case.key)
            print(f"zoo: {exc}", file=sys.stderr)
        if args.json is None:
            print(f"  {case.key} ...", file=sys.stderr, end="\r")
    summary = summarize(outcomes, skipped)
    summary["crashed"] = crashed
    if args.json is not None:
        text = json.dumps(
            {"summary": summary, "cases": [asdict(o) for o in outcomes]}, indent=2, default=str
        )
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    else:
        print(render_table(outcomes, summary))
        if crashed:
            print(f"crashed (broken cases, not counted): {', '.join(crashed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
