"""Showing the user's source lines: the right file from any directory, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from memwatch_tui import user_source
from memwatch_tui.user_source import MAX_SOURCE_BYTES, read_excerpt, search_dirs

from tests.tui.runs import STARTED


class TestExcerpt:
    def test_lines_around_the_location_from_a_search_dir(self, source_dir: Path):
        # GIVEN a location recorded relative to the script's directory
        excerpt = read_excerpt("train.py", 42, [source_dir], context=2, recorded_at=STARTED)
        # THEN the excerpt holds the lines around it, the file unchanged since the run
        assert [n for n, _ in excerpt.lines] == [40, 41, 42, 43, 44]
        assert "total_loss += loss" in dict(excerpt.lines)[42]
        assert excerpt.note is None

    def test_a_missing_file_says_so(self):
        excerpt = read_excerpt("nowhere/train.py", 3)
        assert excerpt.lines == ()
        assert excerpt.note == "source not found on this machine: nowhere/train.py"

    def test_a_file_edited_after_the_run_warns(self, source_dir: Path):
        excerpt = read_excerpt("train.py", 1, [source_dir], recorded_at=STARTED - 7200)
        assert excerpt.note == "file changed since the run: lines may have moved"

    def test_a_line_past_the_end(self, source_dir: Path):
        excerpt = read_excerpt(str(source_dir / "train.py"), 999)
        assert "line 999 is gone" in (excerpt.note or "")


class TestFromAnotherDirectory:
    def test_relative_paths_resolve_against_the_runs_working_directory(
        self, source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        # GIVEN a run recorded in source_dir/.. with the location "src/train.py",
        # and the dashboard opened from an unrelated directory
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        dirs = search_dirs(str(source_dir.parent), tmp_path / "runs" / "x.db", "src/train.py")
        # WHEN the excerpt is read
        excerpt = read_excerpt("src/train.py", 42, dirs)
        # THEN the run's file is found through the recorded working directory
        assert excerpt.note is None
        assert "total_loss += loss" in dict(excerpt.lines)[42]

    def test_the_working_directory_comes_before_the_current_one(
        self, source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        # GIVEN a different train.py in the current directory
        here = tmp_path / "here"
        here.mkdir()
        (here / "train.py").write_text("other = 1\n" * 60)
        monkeypatch.chdir(here)
        # WHEN the run's working directory is known
        excerpt = read_excerpt("train.py", 42, search_dirs(str(source_dir), None, "train.py"))
        # THEN the run's own file is shown, not the one that happens to be here
        assert "total_loss += loss" in dict(excerpt.lines)[42]


class TestOnlySourceFiles:
    @pytest.mark.parametrize("named", ["/etc/passwd", "/proc/self/environ", "notes.txt"])
    def test_a_location_naming_a_non_python_file_is_not_read(self, named: str):
        # GIVEN a crafted finding pointing at a file that is not Python source
        # WHEN its excerpt is asked for
        excerpt = read_excerpt(named, 1, [Path("/")])
        # THEN nothing of it is shown, and the note says why
        assert excerpt.lines == ()
        assert excerpt.note == f"not shown: {named} is not a Python source file"

    def test_a_py_name_that_is_not_a_regular_file_is_not_read(self, tmp_path: Path):
        # GIVEN "evil.py", a link to a file that is not Python source
        secret = tmp_path / "secret"
        secret.write_text("token=1\n")
        (tmp_path / "evil.py").symlink_to(secret)
        excerpt = read_excerpt("evil.py", 1, [tmp_path])
        # THEN the link's target is not shown
        assert excerpt.lines == ()
        assert "not a regular Python file" in (excerpt.note or "")

    def test_a_huge_file_is_not_read(self, tmp_path: Path):
        big = tmp_path / "big.py"
        with open(big, "wb") as handle:
            handle.truncate(MAX_SOURCE_BYTES + 1)
        excerpt = read_excerpt(str(big), 1)
        assert excerpt.lines == ()
        assert "larger than 4 MiB" in (excerpt.note or "")

    def test_only_the_lines_shown_are_read(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        # GIVEN a 200,000-line source file, and a count of the lines read from it
        path = tmp_path / "long.py"
        path.write_text("x = 1\n" * 200_000)
        reads = []
        real_open = open

        class Counting:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def readline(self, limit=-1):
                reads.append(1)
                return self.handle.readline(limit)

        monkeypatch.setattr(
            user_source, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False
        )
        # WHEN line 10 is shown with 3 lines of context
        excerpt = read_excerpt(str(path), 10, context=3)
        # THEN 13 lines were read, not 200,000
        assert [n for n, _ in excerpt.lines] == list(range(7, 14))
        assert len(reads) == 13

    def test_a_long_line_is_cut(self, tmp_path: Path):
        path = tmp_path / "wide.py"
        path.write_text("a = 1\n" + "b" * 100_000 + "\nc = 3\n")
        excerpt = read_excerpt(str(path), 3, context=1)
        lines = dict(excerpt.lines)
        assert lines[3] == "c = 3"
        assert len(lines[2]) == user_source.MAX_LINE_CHARS
        assert os.path.getsize(path) > 100_000
