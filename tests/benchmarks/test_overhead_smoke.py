"""The overhead benchmark still runs: ``benchmarks/overhead.py --quick`` end to end.

The benchmark's timings are not judged here (they depend on the machine); this keeps the
script from rotting (every section runs, the JSON has every workload and configuration
with positive times) and checks the behaviour it reports that does not depend on the
machine: the leak is found within a few steps and memwatch's own memory stays bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "overhead.py"
WORKLOADS = {"tiny-mlp", "mlp-1024", "convnet", "many-forwards", "bptt"}
CONFIGS = {"none", "memwatch", "memwatch-deep", "profiler", "gc-census"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "overhead.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        cwd=tmp_path_factory.getbasetemp(),
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc.stdout


def test_every_workload_and_configuration_has_positive_times(result: tuple[dict, str]) -> None:
    data, _ = result
    overhead = data["overhead"]
    assert set(overhead) == WORKLOADS
    for workload, entry in overhead.items():
        assert set(entry["configs"]) == CONFIGS, workload
        for config, r in entry["configs"].items():
            assert r["ms_per_step"] > 0, (workload, config)
            assert r["ratio"] > 0, (workload, config)
            assert len(r["ms_rounds"]) == data["options"]["rounds"]
        assert entry["configs"]["none"]["ratio"] == pytest.approx(1.0)


def test_targets_and_machine_are_reported(result: tuple[dict, str]) -> None:
    data, stdout = result
    assert {t["workload"] for t in data["targets"]} == WORKLOADS
    assert all(t["status"] in ("PASS", "MISS") for t in data["targets"])
    env = data["environment"]
    assert env["date"] and env["torch"] and env["python"]
    assert env["machine"]["platform"] and env["machine"]["cores"]
    assert "memwatch" in data["deep_config"]
    assert "| configuration |" in stdout
    assert ("PASS" in stdout) or ("MISS" in stdout)


def test_other_sections_report(result: tuple[dict, str]) -> None:
    data, _ = result
    run_file = data["run_file"]
    assert run_file["default"]["bytes"] > 0
    assert run_file["default"]["rows"]["steps"] == run_file["steps"]
    memory = data["memory"]
    assert memory["points"][-1]["step"] == memory["steps"]
    assert memory["points"][-1]["steps_in_memory"] > 0
    assert memory["bounded"] is True, memory  # memwatch's own memory stays flat
    assert data["long_run"]["ms_per_step_full"] > 0


def test_the_leak_section_finds_the_leak_within_a_few_steps(result: tuple[dict, str]) -> None:
    # GIVEN the benchmark's `total += loss` loop, leaking from step `leak_starts_at_step`
    leak = result[0]["leak"]
    # THEN memwatch reports graph-accumulation while the loop runs, a few steps after the
    # leak starts, dated at the step the leak started
    assert leak["detected"] is True and leak["detected_only_at_exit"] is False, leak
    assert 1 <= leak["steps_to_finding"] <= 8
    assert leak["finding_first_step"] == leak["leak_starts_at_step"]
    assert "`total`" in leak["finding_title"]
    assert "graph-accumulation" in leak["detectors"]


def test_the_idle_configuration_times_a_watch_whose_hooks_return_at_once(
    tmp_path: Path,
) -> None:
    # GIVEN the benchmark's `memwatch-idle` configuration, entered around a tiny step
    overhead = load_benchmark("overhead.py", "overhead_bench")
    import torch

    config = overhead.make_configs(torch.device("cpu"))["memwatch-idle"]
    step = overhead.WORKLOADS["tiny-mlp"].build(True, torch.device("cpu"))
    plain_zero_grad = torch.optim.Optimizer.zero_grad
    with config.enter(tmp_path / "run.db") as watch:
        for _ in range(3):
            step()
        steps_before = watch._tracker.step
        # WHEN the settle steps have run and the configuration switches the watch off
        assert config.after_settle is not None
        config.after_settle(watch)
        for _ in range(3):
            step()
        # THEN the watch sees no more steps: what the timed block measures is its hooks alone
        assert watch._tracker.off
        assert watch._tracker.step == steps_before
        assert torch.optim.Optimizer.zero_grad is not plain_zero_grad  # installed, idle
    # ... and the block leaves no hook behind for the configurations timed after it
    assert torch.optim.Optimizer.zero_grad is plain_zero_grad
