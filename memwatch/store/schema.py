"""The run file's tables. Bump SCHEMA_MAJOR on an incompatible change; readers refuse others."""

from __future__ import annotations

SCHEMA_MAJOR = 1
# 1.1: RunInfo.cwd, run info keys recording_stopped_at_step/_reason;
# 1.2: RunInfo.device_index, the categories table (memory by category per step);
# 1.3: meta key evidence_version (memwatch.evidence)
# 1.4: steps.measured (what was measured on the step: memwatch.records.MEASURED_*); the
#      saved_* columns may be NULL (saved tensors not counted on that step: sampling)
SCHEMA_MINOR = 4
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
APPLICATION_ID = 0x4D57_5231  # "MWR1": lets a reader tell a memwatch file from other SQLite

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    step                 INTEGER PRIMARY KEY,
    started_at           REAL NOT NULL,
    duration_s           REAL NOT NULL,
    boundary             TEXT NOT NULL,
    allocated_bytes      INTEGER,
    reserved_bytes       INTEGER,
    peak_allocated_bytes INTEGER,
    device_used_bytes    INTEGER,
    saved_bytes          INTEGER,
    saved_peak_bytes     INTEGER,
    saved_stale_bytes    INTEGER,
    rss_bytes            INTEGER,
    forward_calls        INTEGER NOT NULL,
    backward_calls       INTEGER NOT NULL,
    oom_events           INTEGER NOT NULL,
    measured             INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    step     INTEGER NOT NULL,
    time     REAL NOT NULL,
    location TEXT,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, step);
CREATE TABLE IF NOT EXISTS holders (
    step     INTEGER NOT NULL,
    name     TEXT NOT NULL,
    bytes    INTEGER NOT NULL,
    tensors  INTEGER NOT NULL,
    location TEXT
);
CREATE INDEX IF NOT EXISTS holders_step ON holders(step);
CREATE TABLE IF NOT EXISTS categories (
    step              INTEGER PRIMARY KEY,
    parameters_bytes  INTEGER NOT NULL,
    gradients_bytes   INTEGER NOT NULL,
    optimizer_bytes   INTEGER NOT NULL,
    activations_bytes INTEGER NOT NULL,
    other_bytes       INTEGER,
    total_bytes       INTEGER,
    basis             TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    first_step INTEGER,
    found_at   REAL NOT NULL,
    data       TEXT NOT NULL
);
"""
