"""The whole-program benchmark still runs, and memwatch changes nothing a program computes.

``benchmarks/examples.py --quick`` runs the reproduced pytorch/examples programs for a few
seconds each, plain and under ``memwatch run``. Timings are not judged here; the weights
each run ends with are: a watched REINFORCE run (dropout, sampled actions, 5 episodes of
batch-1 forwards) must end with exactly the plain run's weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "examples.py"


def test_watched_examples_compute_what_plain_ones_do(tmp_path: Path) -> None:
    # GIVEN the reproduced examples, at their quick sizes
    out = tmp_path / "examples.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # WHEN each runs once plain and once under `memwatch run`
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "1", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    # THEN every run succeeded and ended with the same weights, plain and watched
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    results = {r["example"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"reinforce", "time_sequence_prediction"}
    for result in results.values():
        assert result["same_result"] and not result["exit_codes"]
        assert result["wall_ratio"] > 0 and len(result["wall_ratios"]) == 1
    # AND the table names each example
    assert "| reinforce |" in proc.stdout and "| time_sequence_prediction |" in proc.stdout
