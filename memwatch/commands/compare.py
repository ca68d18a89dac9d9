"""Loading what ``diff``, ``check --baseline`` and ``baseline`` compare: a run file or a
baseline JSON, as a ``RunProfile``."""

from __future__ import annotations

import json
from pathlib import Path

from memwatch.analysis.compare import RunProfile, profile
from memwatch.errors import MemwatchError, RunFileError
from memwatch.store.paths import is_rank_directory, resolve_run


def load_profile(arg: str | None, warmup: int = 3) -> tuple[Path, RunProfile]:
    """A run (file, or newest in ./memwatch-runs when ``arg`` is None) or a baseline JSON."""
    path = Path(arg) if arg is not None else resolve_run(None)
    if path.is_file() and _looks_like_json(path):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MemwatchError(f"{path}: not a readable baseline JSON ({exc})") from None
        try:
            return path, RunProfile.from_dict(data)
        except MemwatchError as exc:
            raise MemwatchError(f"{path}: {exc}") from None
    path = resolve_run(arg)
    if is_rank_directory(path):
        raise RunFileError(
            f"{path} is a run directory of several ranks: name one rank's file "
            "(e.g. DIR/<name>-rank0.db) to compare"
        )
    from memwatch.commands.common import load_run

    loaded = load_run(path)
    return path, profile(
        loaded.info.script, loaded.steps, loaded.findings, loaded.categories, warmup=warmup
    )


def _looks_like_json(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")
