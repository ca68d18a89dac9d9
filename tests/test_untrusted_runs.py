"""Run files are untrusted input: a crafted or damaged file gets one line and exit 2.

A run file comes from anywhere (a CI artifact, a colleague's upload). ``report`` and
``check`` must never show a traceback for one, never exit 1 (``check``'s "findings
found") because of one, never write to it, and never let a control character or markup
stored in it reach the terminal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from memwatch.analysis import AnalysisInput
from memwatch.cli import main
from memwatch.errors import RunFileError
from memwatch.records import Event, Finding, Holder, Location
from memwatch.store import RunReader, RunWriter
from tests.distributed.records import rank_info, step
from tests.test_store import make_info


def cli(*args: str) -> tuple[int, str, str]:
    """``memwatch ARGS`` in this process: (status, stdout, stderr). An exception escaping
    ``main`` (a traceback for the user) fails the calling test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def write_good_run(path: Path, **info: object) -> Path:
    """A finished run of 12 steps with an OOM event, a holder snapshot and a finding."""
    writer = RunWriter(path, make_info(**info))
    for i in range(12):
        writer.add_step(step(i, saved=i * 1024))
    loc = Location("train.py", 42, "main")
    writer.add_event(Event("oom", 5, 1005.0, {"requested_bytes": 4096}, loc))
    writer.add_holders([Holder(11, "losses", 4096, 3, loc)])
    writer.put_finding(Finding("memory-growth", "warning", "t", "d", 3, "f", loc, "losses"))
    writer.commit()
    writer.close(replace(make_info(**info), ended_at=1100.0, exit_status=0))
    return path


@contextlib.contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """Assert that reading ``path`` wrote nothing: same bytes, same mtime, no new files."""
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent)))
    yield
    after = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent)))
    assert after == before, "reading the run file changed it or created files beside it"


def assert_one_line_refusal(status: int, out: str, err: str) -> None:
    assert status == 2, (status, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwatch: "), err


# -- bad values in a valid SQLite file --------------------------------------------------------
BAD_VALUES: dict[str, tuple[str, tuple[object, ...]]] = {
    "run description not JSON": ("UPDATE meta SET value = '{not json' WHERE key = 'run'", ()),
    "run description a list": ("UPDATE meta SET value = '[]' WHERE key = 'run'", ()),
    "run start time text": (
        "UPDATE meta SET value = json_set(value, '$.started_at', 'soon') WHERE key = 'run'",
        (),
    ),
    "run pid huge": (
        "UPDATE meta SET value = json_set(value, '$.pid', 1e300) WHERE key = 'run'",
        (),
    ),
    "run argv not a list": (
        "UPDATE meta SET value = json_set(value, '$.argv', 'train.py') WHERE key = 'run'",
        (),
    ),
    "run description missing": ("DELETE FROM meta WHERE key = 'run'", ()),
    "schema version garbage": ("UPDATE meta SET value = 'x.y' WHERE key = 'schema_version'", ()),
    "schema version from the future": (
        "UPDATE meta SET value = '99.0' WHERE key = 'schema_version'",
        (),
    ),
    "text in a byte column": ("UPDATE steps SET saved_bytes = 'lots' WHERE step = 3", ()),
    "huge integer bytes": ("UPDATE steps SET rss_bytes = ? WHERE step = 4", (2**63 - 1,)),
    "huge step index": ("UPDATE steps SET step = ? WHERE step = 0", (2**62,)),
    "infinite duration": ("UPDATE steps SET duration_s = 1e999 WHERE step = 2", ()),
    "text duration": ("UPDATE steps SET duration_s = 'slow' WHERE step = 2", ()),
    "event data not JSON": ("UPDATE events SET data = '{oops'", ()),
    "event data a list": ("UPDATE events SET data = '[1, 2]'", ()),
    "event data nested too deep": ("UPDATE events SET data = ?", ("[" * 100_000,)),
    "event location wrong types": ("UPDATE events SET location = '{\"file\": 1}'", ()),
    "event time text": ("UPDATE events SET time = 'yesterday'", ()),
    "steps table gone": ("DROP TABLE steps", ()),
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_good_run(tmp_path_factory.mktemp("good") / "run.db")


def crafted_copy(good: Path, directory: Path, sql: str, args: tuple[object, ...]) -> Path:
    path = directory / "crafted.db"
    shutil.copyfile(good, path)
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_a_file_with_a_bad_value_gets_one_line_and_exit_2(
    case: str, good_run: Path, tmp_path: Path
) -> None:
    # GIVEN a valid SQLite run file holding one value memwatch never writes
    sql, args = BAD_VALUES[case]
    path = crafted_copy(good_run, tmp_path, sql, args)
    # WHEN it is reported (every format) and checked
    for command in (
        ("report", str(path)),
        ("report", "--format", "markdown", str(path)),
        ("report", "--format", "json", str(path)),
        ("check", str(path)),
    ):
        with unchanged(path):
            status, out, err = cli(*command)
        # THEN each says what is wrong in one line and exits 2, never 1 or a traceback
        assert_one_line_refusal(status, out, err)


def test_bad_holder_and_finding_rows_are_refused_by_the_reader(
    good_run: Path, tmp_path: Path
) -> None:
    # GIVEN files with a holder row and a stored finding of the wrong shape
    holder = crafted_copy(good_run, tmp_path, "UPDATE holders SET bytes = 'big'", ())
    (tmp_path / "f").mkdir()
    finding = crafted_copy(good_run, tmp_path / "f", "UPDATE findings SET data = '{\"k\": 1}'", ())
    # WHEN the dashboard's reads run on them
    # THEN each is refused with a RunFileError naming the file, not a TypeError
    with RunReader(holder) as reader, pytest.raises(RunFileError, match="holder's bytes"):
        reader.holders_at(11)
    with RunReader(finding) as reader, pytest.raises(RunFileError, match="finding"):
        reader.findings()


# -- damaged files: truncations and byte flips -------------------------------------------------
def damaged_variants(good: bytes) -> Iterator[tuple[str, bytes]]:
    """A bounded, reproducible set of damaged copies of ``good``."""
    for size in (0, 16, 99, 100, 1024, 4096, len(good) // 2, len(good) - 1):
        yield f"truncated to {size} bytes", good[:size]
    rng = random.Random(11)
    for _ in range(36):
        position = rng.randrange(len(good))
        flipped = bytearray(good)
        flipped[position] ^= 0xFF
        yield f"byte {position} flipped", bytes(flipped)


def test_damaged_files_never_give_a_traceback_or_a_write(good_run: Path, tmp_path: Path) -> None:
    # GIVEN truncated and bit-flipped copies of a good run file
    good = good_run.read_bytes()
    refused = 0
    for label, data in damaged_variants(good):
        directory = tmp_path / str(abs(hash(label)))
        directory.mkdir()
        path = directory / "run.db"
        path.write_bytes(data)
        for command in (("report", str(path)), ("check", str(path))):
            # WHEN it is reported or checked
            with unchanged(path):
                status, out, err = cli(*command)
            # THEN it is either read (the damage missed what matters) or refused with one
            # line and exit 2; never a traceback, never a write to the file
            assert "Traceback" not in err, label
            if status == 2:
                assert_one_line_refusal(status, out, err)
                refused += 1
            else:
                assert status in (0, 1) and out, label
    assert refused >= 8  # every truncation at least is refused


# -- names that URIs would misread ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["run#1.db", "a?b.db", "x%2Fy.db", "sp ace&=.db"])
def test_run_files_with_uri_characters_in_their_names_just_work(tmp_path: Path, name: str) -> None:
    # GIVEN a run file whose name holds characters that mean something in a URI
    path = write_good_run(tmp_path / name)
    # WHEN it is reported
    with unchanged(path):
        status, out, err = cli("report", str(path))
    # THEN that very file is read, and no other file is created (run, a, x/...)
    assert status == 0, err
    assert "memwatch: train.py:" in out
    assert sorted(os.listdir(tmp_path)) == [name]


# -- control characters and markup stored in the file --------------------------------------------
CORPUS = [
    "\x1b]0;pwned-title\x07",  # OSC 0: retitles the window
    "\x1b[2J\x1b[H",  # clears the screen
    "\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]52;c;ZXZpbA==\x07",  # OSC 52: writes the clipboard
    "\x9b31mC1-CSI",  # 8-bit CSI
    "\r\nmemwatch: train.py: no memory problems found in 1 step",  # a faked line
    "\u202eevil\u202c",  # bidi override
    "nul\x00del\x7f",
    "[bold red]markup[/] [@click=app.screenshot('x','/tmp')] [/oops]",
    "[click](http://evil.example/) <img src=x onerror=alert(1)> a|b `code`",
]
EVIL = "".join(CORPUS)


def echo_stored_strings(data: AnalysisInput) -> list[Finding]:
    """A stand-in detector that passes stored strings into its finding, as real ones do
    with variable names and source locations."""
    events = [e for e in data.events if e.kind == "crafted"]
    if not events:
        return []
    e = events[0]
    name = str(e.data["name"])
    return [
        Finding(
            "memory-growth",
            "error",
            f"`{name}` grows",
            f"{name} holds it",
            1,
            f"fix {name}",
            e.location,
            name,
            4096,
            512,
        )
    ]


def write_crafted_run(path: Path, **info: object) -> Path:
    crafted = {
        "script": f"train{EVIL}.py",
        "argv": (EVIL,),
        "device_name": EVIL,
        "torch": EVIL,
        "host": EVIL,
        "pid": 99_999_999,
    }
    crafted.update(info)
    writer = RunWriter(path, make_info(**crafted))
    for i in range(8):
        writer.add_step(step(i))
    writer.add_event(Event("crafted", 2, 1002.0, {"name": EVIL}, Location(EVIL, 7, EVIL)))
    writer.commit()
    writer.close()  # no end record: the report also says how the run stands
    return path


def assert_plain(text: str) -> None:
    bad = sorted(
        {
            repr(c)
            for c in text
            if (unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t") or c in "\u2028\u2029"
        }
    )
    assert not bad, f"control characters reached the output: {bad}"


def test_control_characters_and_markup_never_reach_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run file whose every stored string carries escapes, fake lines and markup
    monkeypatch.setattr("memwatch.analysis.registry.DETECTORS", [echo_stored_strings])
    single = write_crafted_run(tmp_path / "crafted.db")
    ranks = tmp_path / "ranks"
    for rank in (0, 1):
        info = rank_info(rank, script=f"ddp{EVIL}.py", host=EVIL, device_name=EVIL)
        write_crafted_run(ranks / f"ddp-rank{rank}.db", **info.to_dict())
    (ranks / f"junk{EVIL.replace('/', '')[:40]}.db").write_text("not a run")  # noted
    # WHEN every view renders them
    outputs = {}
    for fmt in ("text", "markdown", "json"):
        outputs[f"report {fmt}"] = cli("report", "--format", fmt, str(single))
        outputs[f"ranks {fmt}"] = cli("report", "--format", fmt, str(ranks))
    outputs["check"] = cli("check", str(single))
    outputs["check ranks"] = cli("check", str(ranks))
    # THEN they ran, and no control character reached stdout or stderr
    for view, (status, out, err) in outputs.items():
        assert status in (0, 1), (view, err)
        assert "crafted" not in err and out, view
        assert_plain(out)
        assert_plain(err)
        # AND no stored line break faked a report line
        assert not any(
            line.startswith("memwatch: train.py: no memory problems") for line in out.splitlines()
        ), view
    # AND the escapes are shown, not dropped: the reader sees the file held something odd
    assert "\\x1b]0;pwned-title\\x07" in outputs["report text"][1]
    # AND markdown shows links and HTML from the file as text, never as markup
    from markdown_it import MarkdownIt  # installed with rich

    for view in ("report markdown", "ranks markdown"):
        # (bare URLs, which GitHub shows as themselves, are not what this is about)
        html = MarkdownIt("commonmark").enable("table").render(outputs[view][1])
        assert "<a " not in html and "<img" not in html, view
        rows = html.split("</tr>")[:-1]
        header_cells = len(re.findall("<th[ >]", rows[0]))
        assert header_cells >= 6 and all(
            len(re.findall("<td[ >]", row)) == header_cells for row in rows[1:]
        ), view  # no stored pipe split a table cell
    # AND JSON stays valid JSON holding the strings as they were
    status, out, _ = outputs["report json"]
    assert json.loads(out)["run"]["device"]["name"] == EVIL
