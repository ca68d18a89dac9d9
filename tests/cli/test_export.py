"""memwatch export: CSV/JSON per-step tables and the self-contained HTML page."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from memwatch import memwatch
from memwatch.cli import main

HOSTILE = "<script>alert(1)</script>\x1b[2J&\"'.py"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose script name is hostile markup and which keeps its graphs (findings)."""
    path = tmp_path_factory.mktemp("export") / "run.db"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    kept = []
    with memwatch(path, script=HOSTILE):
        for _ in range(10):
            opt.zero_grad()
            loss = model(torch.randn(16, 32)).pow(2).mean()
            loss.backward(retain_graph=True)
            kept.append(loss)
            opt.step()
    return path


def test_html_is_well_formed_self_contained_and_marks_findings(
    leaky_run: Path, tmp_path: Path
) -> None:
    # WHEN exported as HTML
    out = tmp_path / "run.html"
    status, _, err = _cli("export", str(leaky_run), "--format", "html", "-o", str(out))
    assert status == 0 and "wrote" in err
    page = out.read_text(encoding="utf-8")
    # THEN it parses as XML (every tag closed, every attribute quoted)
    assert page.startswith("<!DOCTYPE html>\n")
    root = ET.fromstring(page.split("\n", 1)[1])
    # AND it references nothing outside itself: no URL, no script, no external resource
    assert not re.search(r"https?:|//|src=|href=|url\(|<script|@import", page.replace("\\", ""))
    assert root.find(".//script") is None
    # AND it draws the recorded series and the stacked categories as inline SVG
    captions = [c.text or "" for c in root.iter("figcaption")]
    assert "autograd saved (step end)" in captions and "host RSS" in captions
    assert any(c.startswith("memory by category") for c in captions)
    assert len(list(root.iter("svg"))) == len(captions)
    # AND each finding's first step is marked, titled with the finding
    marks = [t.text or "" for t in root.iter("title")]
    assert any("retain-graph-leak" in m for m in marks)


def test_strings_from_the_run_file_are_escaped(leaky_run: Path) -> None:
    status, page, _ = _cli("export", str(leaky_run))
    assert status == 0
    assert "<script>" not in page and "\x1b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_csv_has_one_row_per_step_with_categories(leaky_run: Path) -> None:
    status, text, _ = _cli("export", str(leaky_run), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 0
    assert [int(r["step"]) for r in rows] == list(range(10))
    assert all(int(r["category_parameters_bytes"]) > 0 for r in rows)
    assert {r["category_basis"] for r in rows} == {"estimated"}


def test_json_columns_match_rows(leaky_run: Path) -> None:
    status, text, _ = _cli("export", str(leaky_run), "--format", "json")
    data = json.loads(text)
    assert status == 0 and data["schema"] == "memwatch.export/1"
    assert all(len(row) == len(data["columns"]) for row in data["steps"])
    assert {f["kind"] for f in data["findings"]} >= {"retain-graph-leak"}


def test_export_never_overwrites_the_run_file(leaky_run: Path) -> None:
    before = leaky_run.read_bytes()
    status, _, err = _cli("export", str(leaky_run), "-o", str(leaky_run))
    assert status == 2 and err.startswith("memwatch: ")
    assert leaky_run.read_bytes() == before
