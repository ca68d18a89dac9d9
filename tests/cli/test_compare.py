"""memwatch diff / baseline / check --baseline, the pure comparison, and the pytest helper."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from memwatch import memwatch
from memwatch.analysis.compare import RunProfile, check, diff, parse_tolerance
from memwatch.cli import main
from memwatch.errors import MemwatchError
from memwatch.testing import assert_matches_baseline


def _record(path: Path, keep_graphs: bool, steps: int = 12) -> None:
    """A small MLP loop; ``keep_graphs`` keeps every step's graph (retain_graph + a list)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    kept = []
    with memwatch(path):
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(32, 64)).pow(2).mean()
            loss.backward(retain_graph=keep_graphs)
            if keep_graphs:
                kept.append(loss)
            opt.step()


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    _record(base / "clean.db", keep_graphs=False)
    _record(base / "leak.db", keep_graphs=True)
    return base / "clean.db", base / "leak.db"


def test_diff_names_what_grew_in_b(runs: tuple[Path, Path]) -> None:
    # GIVEN a clean run A and a run B that keeps every step's graph
    clean, leak = runs
    # WHEN diffed
    status, out, _ = _cli("diff", str(clean), str(leak))
    # THEN the verdict says B's peak is higher, in activations, from an early step, that B
    #      grows, and which findings appeared; the table lists the metrics
    assert status == 0
    verdict = out.splitlines()[0]
    assert verdict.startswith("memwatch diff: B's peak autograd saved is ")
    assert "higher, all in activations, from step 1" in verdict
    assert "B grows" in verdict and "retain-graph-leak" in verdict
    assert "activations" in out and "findings appeared in B:" in out


def test_diff_of_a_run_with_itself_matches(runs: tuple[Path, Path]) -> None:
    clean, _ = runs
    status, out, _ = _cli("diff", str(clean), str(clean), "--format", "json")
    data = json.loads(out)
    assert status == 0
    assert data["verdict"] == "B matches A within 5%"
    assert data["appeared"] == data["disappeared"] == []


def test_baseline_then_check_gates_a_regression(runs: tuple[Path, Path], tmp_path: Path) -> None:
    # GIVEN a baseline written from the clean run
    clean, leak = runs
    status, out, _ = _cli("baseline", str(clean))
    assert status == 0 and json.loads(out)["schema"] == "memwatch.baseline/1"
    base = tmp_path / "mem-baseline.json"
    base.write_text(out)
    # WHEN the clean run is checked against it THEN exit 0
    status, out, _ = _cli("check", str(clean), "--baseline", str(base))
    assert status == 0, out
    assert out.rstrip().endswith("memwatch check: ok")
    # WHEN the leaking run is checked THEN exit 1 with the metrics over the limit marked
    status, out, _ = _cli("check", str(leak), "--baseline", str(base), "--tolerance", "10%")
    assert status == 1
    over = [line for line in out.splitlines() if line.endswith("OVER")]
    assert any("peak autograd saved" in line for line in over)
    assert any("autograd kept across steps" in line for line in over)
    # AND a run file works as the baseline too
    assert _cli("check", str(clean), "--baseline", str(clean))[0] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable baseline JSON"),
        ('{"schema": "other/1"}', "not a memwatch baseline"),
        ('{"schema": "memwatch.baseline/1", "metrics": {"x": "1"}}', "is not a number"),
    ],
)
def test_bad_baseline_is_one_line_and_exit_2(
    runs: tuple[Path, Path], tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    status, _, err = _cli("check", str(runs[0]), "--baseline", str(bad))
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("memwatch: ") and message in err


def test_bad_tolerance_is_exit_2(runs: tuple[Path, Path]) -> None:
    status, _, err = _cli("diff", str(runs[0]), str(runs[1]), "--tolerance", "lots")
    assert status == 2 and "bad tolerance" in err


def test_strings_from_a_baseline_are_printed_as_plain_text(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    # GIVEN a baseline whose finding title carries terminal escapes
    hostile = tmp_path / "hostile.json"
    hostile.write_text(
        json.dumps(
            {
                "schema": "memwatch.baseline/1",
                "metrics": {},
                "findings": [{"kind": "x\x1b[2J", "severity": "error", "title": "\x1b]0;pwn\x07t"}],
            }
        )
    )
    # WHEN diffed THEN no control character reaches the terminal
    status, out, _ = _cli("diff", str(hostile), str(runs[0]))
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out


# -- pure functions --------------------------------------------------------------------------
def _profile(
    peak: int, activations: int, growth: float = 0.0, series_jump_at: int = 1
) -> RunProfile:
    return RunProfile(
        script="t.py",
        steps=8,
        values={
            "peak_allocated_bytes": peak,
            "allocated_growth": growth,
            "category.parameters": 1000_000,
            "category.activations": activations,
        },
        series={
            "allocated": tuple(
                (s, peak if s >= series_jump_at else 1_000_000 + 1_000_000) for s in range(8)
            )
        },
    )


def test_verdict_attributes_a_higher_peak_to_its_category_and_first_step() -> None:
    # GIVEN A with a 10 MB peak, B with 11.8 MB, the extra 1.8 MB all in activations
    a = _profile(10_000_000, 4_000_000, series_jump_at=0)
    b = _profile(11_800_000, 5_800_000, series_jump_at=3)
    # THEN
    assert diff(a, b).verdict == (
        "B's peak tensor memory is 18% higher, all in activations, from step 0"
    )


def test_check_allows_the_tolerance_and_flags_beyond_it() -> None:
    base = _profile(10_000_000, 4_000_000)
    within = _profile(10_400_000, 4_100_000)
    beyond = _profile(11_000_000, 4_100_000)
    assert all(g.ok for g in check(within, base, 0.05))
    (over,) = [g for g in check(beyond, base, 0.05) if not g.ok]
    assert over.metric.key == "peak_allocated_bytes"


def test_tolerance_forms() -> None:
    assert parse_tolerance("5%") == pytest.approx(0.05)
    assert parse_tolerance("0.1") == pytest.approx(0.1)
    with pytest.raises(MemwatchError):
        parse_tolerance("-5%")


# -- pytest helper -----------------------------------------------------------------------------
def test_assert_matches_baseline_writes_passes_and_fails(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    clean, leak = runs
    base = tmp_path / "golden.json"
    # GIVEN no baseline THEN it fails saying how to write one
    with pytest.raises(AssertionError, match="MEMWATCH_UPDATE_BASELINE=1"):
        assert_matches_baseline(clean, base)
    # WHEN written from the clean run THEN the clean run matches it
    assert_matches_baseline(clean, base, update=True)
    assert_matches_baseline(clean, base)
    # AND the leaking run fails, naming the metric and the finding
    with pytest.raises(AssertionError, match="peak autograd saved") as info:
        assert_matches_baseline(leak, base)
    assert "retain-graph-leak" in str(info.value)


def test_assert_matches_baseline_takes_a_watch(tmp_path: Path) -> None:
    # GIVEN a watch (kept in memory) and a baseline of the same loop
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(6):
            opt.zero_grad()
            model(torch.randn(8, 16)).sum().backward()
            opt.step()
    assert_matches_baseline(mw, tmp_path / "b.json", update=True)
    assert_matches_baseline(mw, tmp_path / "b.json")
