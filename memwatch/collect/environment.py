"""Describing the run (torch, device, rank) and refusing torch versions memwatch cannot watch."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Sequence

import torch

from memwatch.collect.device import describe_device
from memwatch.errors import MemwatchError
from memwatch.records import RunInfo

MIN_TORCH = (2, 4)


def torch_version_tuple(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def check_torch_version(version: str | None = None) -> None:
    """memwatch relies on global optimizer and module hooks and ``always_call`` (2.4+)."""
    found = version if version is not None else torch.__version__
    if torch_version_tuple(found) < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise MemwatchError(f"memwatch needs torch >= {need}; this environment has torch {found}")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def rank_from_env() -> tuple[int | None, int | None, int | None]:
    """(rank, world size, local rank) as torchrun sets them, or Nones outside torchrun."""
    return _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")


def run_info(run_id: str, script: str, argv: Sequence[str]) -> RunInfo:

    device_type, device_name, total, device_index = describe_device()
    rank, world_size, local_rank = rank_from_env()
    return RunInfo(
        id=run_id,
        script=script,
        argv=tuple(argv),
        started_at=time.time(),
        python=platform.python_version(),
        torch=str(torch.__version__),
        device_type=device_type,
        device_name=device_name,
        device_total_bytes=total,
        device_index=device_index,
        pid=os.getpid(),
        host=socket.gethostname(),
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        cwd=_cwd(),
    )


def _cwd() -> str | None:
    """Where relative paths of this run point (None when the directory was removed)."""
    try:
        return os.getcwd()
    except OSError:
        return None
