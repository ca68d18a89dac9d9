"""Turning untrusted run-file rows into records, or refusing the file with one line.

A run file is data from anywhere: a valid SQLite file can still hold malformed JSON, text
in a numeric column, a byte count of 2**63 or a holder row of the wrong shape. Every value
is checked here, where it leaves the database, so that the detectors and views downstream
only ever see well-typed records, and a bad file gets ``RunFileError`` (one line, exit 2)
instead of a traceback somewhere in a detector.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from memwatch.errors import RunFileError
from memwatch.records import (
    STEP_COLUMNS,
    Event,
    Finding,
    Holder,
    Location,
    MemoryCategories,
    RunInfo,
    StepRecord,
)

#: Largest byte count taken as real (8 PiB): anything above is a corrupt value.
MAX_BYTES = 2**53
#: Largest step index, count or line number taken as real.
MAX_INDEX = 2**40

_STEP_FLOATS = {"started_at", "duration_s"}
#: ``StepRecord.measured`` is a small bit set (memwatch.records.MEASURED_*).
MEASURED_LIMIT = 1 << 16
#: Step columns that are never empty (NOT NULL in the schema); other columns may be None.
#: (The saved_* byte counts became nullable in schema 1.4: not counted on sampled-out steps.)
_STEP_REQUIRED_INTS = {
    "step",
    "forward_calls",
    "backward_calls",
    "oom_events",
}


class BadValue(ValueError):
    """One value of a run file that is not what memwatch writes (turned into RunFileError)."""


def _int(value: Any, what: str, limit: int = MAX_INDEX, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"{what} is {type(value).__name__}, not an integer")
    if not low <= value < limit:
        raise BadValue(f"{what} is out of range")
    return value


def _opt_int(value: Any, what: str, limit: int = MAX_INDEX) -> int | None:
    return None if value is None else _int(value, what, limit)


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"{what} is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > 1e15:
        raise BadValue(f"{what} is out of range")
    return number


def _opt_float(value: Any, what: str) -> float | None:
    return None if value is None else _float(value, what)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadValue(f"{what} is {type(value).__name__}, not text")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise BadValue(f"{what} is {type(text).__name__}, not JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadValue(f"{what} is not valid JSON") from None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadValue(f"{what} is not a JSON object")
    return value


def run_info(text: Any) -> RunInfo:
    """The run description stored in ``meta``."""
    data = _object(_json(text, "the run description"), "the run description")
    argv = data.get("argv") or []
    if not isinstance(argv, list):
        raise BadValue("the run's argv is not a list")
    for field_name in ("id", "script", "python", "torch", "device_type", "device_name", "host"):
        _str(data.get(field_name), f"the run's {field_name}")
    return RunInfo(
        id=data["id"],
        script=data["script"],
        argv=tuple(_str(a, "an argument of the run") for a in argv),
        started_at=_float(data.get("started_at"), "the run's start time"),
        python=data["python"],
        torch=data["torch"],
        device_type=data["device_type"],
        device_name=data["device_name"],
        device_total_bytes=_opt_int(data.get("device_total_bytes"), "device bytes", MAX_BYTES),
        pid=_int(data.get("pid"), "the run's pid", 2**31),
        host=data["host"],
        rank=_opt_int(data.get("rank"), "the run's rank", 2**20),
        world_size=_opt_int(data.get("world_size"), "the world size", 2**20),
        local_rank=_opt_int(data.get("local_rank"), "the local rank", 2**20),
        ended_at=_opt_float(data.get("ended_at"), "the run's end time"),
        exit_status=_opt_exit(data.get("exit_status")),
        recording_stopped_at_step=_opt_int_low(
            data.get("recording_stopped_at_step"), "the step recording stopped at"
        ),
        recording_stopped_reason=_opt_str(
            data.get("recording_stopped_reason"), "why recording stopped"
        ),
        cwd=_opt_str(data.get("cwd"), "the run's working directory"),
    )


def _opt_exit(value: Any) -> int | None:
    return None if value is None else _int(value, "the exit status", 2**31, low=-(2**31))


def _opt_int_low(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what, MAX_INDEX, low=-1)


def step(row: Sequence[Any]) -> StepRecord:
    """One ``steps`` row, in ``STEP_COLUMNS`` order.

    Columns added later by a minor schema version are checked by their kind: a byte count
    (``*_bytes``) is None or an integer in range, anything else None or a finite number.
    """
    values: list[Any] = []
    for name, value in zip(STEP_COLUMNS, row):
        what = f"step column {name}"
        if name in _STEP_FLOATS:
            values.append(_float(value, what))
        elif name == "boundary":
            values.append(_str(value, what))
        elif name in _STEP_REQUIRED_INTS:
            values.append(_int(value, what, MAX_BYTES if name.endswith("_bytes") else MAX_INDEX))
        elif name.endswith("_bytes"):
            values.append(_opt_int(value, what, MAX_BYTES))
        elif name == "measured":
            values.append(_opt_int(value, what, MEASURED_LIMIT))
        elif value is None or (isinstance(value, int) and not isinstance(value, bool)):
            values.append(value)
        else:
            values.append(_float(value, what))
    return StepRecord(*values)


def _bad_step_value_sql(name: str) -> str:
    """SQL that is true when column ``name`` holds what ``step`` would refuse."""
    number = f"typeof({name}) NOT IN ('integer', 'real') OR {name} NOT BETWEEN -1e15 AND 1e15"
    if name in _STEP_FLOATS:
        return number
    if name == "boundary":
        return f"typeof({name}) != 'text'"
    if name == "measured":
        check = f"typeof({name}) != 'integer' OR {name} NOT BETWEEN 0 AND {MEASURED_LIMIT - 1}"
        return f"{name} IS NOT NULL AND ({check})"
    if name in _STEP_REQUIRED_INTS or name.endswith("_bytes"):
        limit = (MAX_BYTES if name.endswith("_bytes") else MAX_INDEX) - 1
        check = f"typeof({name}) != 'integer' OR {name} NOT BETWEEN 0 AND {limit}"
        return check if name in _STEP_REQUIRED_INTS else f"{name} IS NOT NULL AND ({check})"
    return f"{name} IS NOT NULL AND typeof({name}) NOT IN ('integer', 'real')"


#: A WHERE condition matching the step rows ``step`` would refuse: checked by SQLite in
#: one pass (a 100,000-step run in milliseconds) before rows become records unchecked.
BAD_STEP_SQL = " OR ".join(f"({_bad_step_value_sql(name)})" for name in STEP_COLUMNS)


def bad_step_sql(present: Sequence[str]) -> str:
    """``BAD_STEP_SQL`` for a file whose steps table has only the columns ``present``
    (a file from before a minor schema version added one)."""
    return " OR ".join(f"({_bad_step_value_sql(name)})" for name in STEP_COLUMNS if name in present)


def location(text: Any) -> Location | None:
    """A stored location (JSON ``{"file", "line", "function"}``), or None."""
    if text is None or text == "":
        return None
    return location_of(_json(text, "a location"))


def location_of(data: Any) -> Location | None:
    if data is None or data == {}:
        return None
    data = _object(data, "a location")
    return Location(
        _str(data.get("file"), "a location's file"),
        _int(data.get("line"), "a location's line", 2**31),
        _str(data.get("function"), "a location's function"),
    )


def event(row: Sequence[Any]) -> tuple[int, Event]:
    """One ``events`` row (id, kind, step, time, location, data)."""
    ident, kind, step_index, when, loc, data = row
    return _int(ident, "an event id", 2**63), Event(
        _str(kind, "an event's kind"),
        _int(step_index, "an event's step"),
        _float(when, "an event's time"),
        _object(_json(data, "an event's data"), "an event's data"),
        location(loc),
    )


def holder(row: Sequence[Any]) -> Holder:
    """One ``holders`` row (step, name, bytes, tensors, location)."""
    step_index, name, size, tensors, loc = row
    return Holder(
        _int(step_index, "a holder's step"),
        _str(name, "a holder's name"),
        _int(size, "a holder's bytes", MAX_BYTES),
        _int(tensors, "a holder's tensor count"),
        location(loc),
    )


def categories(row: Sequence[Any]) -> MemoryCategories:
    """One ``categories`` row (step, parameters, gradients, optimizer, activations, other,
    total, basis): the four counted categories are never empty, the rest may be."""
    step_index, parameters, gradients, optimizer, activations, other, total, basis = row
    return MemoryCategories(
        _int(step_index, "a category row's step"),
        _int(parameters, "a step's parameters_bytes", MAX_BYTES),
        _int(gradients, "a step's gradients_bytes", MAX_BYTES),
        _int(optimizer, "a step's optimizer_bytes", MAX_BYTES),
        _int(activations, "a step's activations_bytes", MAX_BYTES),
        _opt_int(other, "a step's other_bytes", MAX_BYTES),
        _opt_int(total, "a step's total_bytes", MAX_BYTES),
        _str(basis, "a category basis"),
    )


def finding(text: Any) -> Finding:
    """A stored finding (its JSON object)."""
    data = _object(_json(text, "a finding"), "a finding")
    severity = _str(data.get("severity"), "a finding's severity")
    if severity not in ("error", "warning", "info"):
        raise BadValue("a finding's severity is unknown")
    evidence = data.get("evidence") or {}
    return Finding(
        kind=_str(data.get("kind"), "a finding's kind"),
        severity=severity,  # type: ignore[arg-type]
        title=_str(data.get("title"), "a finding's title"),
        detail=_str(data.get("detail", ""), "a finding's detail"),
        first_step=_opt_int(data.get("first_step"), "a finding's first step"),
        fix=_str(data.get("fix", ""), "a finding's fix"),
        location=location_of(data.get("location")),
        variable=_opt_str(data.get("variable"), "a finding's variable"),
        bytes=_opt_number(data.get("bytes"), "a finding's bytes", low=0),
        growth_per_step_bytes=_opt_signed_bytes(data.get("growth_per_step_bytes")),
        evidence=_object(evidence, "a finding's evidence"),
        rank=_opt_int(data.get("rank"), "a finding's rank", 2**20),
    )


def _opt_signed_bytes(value: Any) -> int | None:
    return _opt_number(value, "a finding's growth", low=-MAX_BYTES)


def _opt_number(value: Any, what: str, low: int) -> int | None:
    """A byte count a detector may have computed as a float: kept as the nearest int."""
    if value is None:
        return None
    number = round(_float(value, what))
    if not low <= number < MAX_BYTES:
        raise BadValue(f"{what} is out of range")
    return number


def refuse(path: object, exc: BadValue) -> RunFileError:
    """The one line a bad value gets."""
    from memwatch.plaintext import plain

    return RunFileError(f"{plain(path)} is not a valid memwatch run file: {exc}")
