"""The run file: one SQLite database per process, written by the watched process only.

``RunWriter`` lives in the training process; ``RunReader`` opens the same file read-only
from anywhere (the report, the dashboard, another terminal) while it is still being written.
"""

from memwatch.store.paths import default_run_path, find_run_files, resolve_run
from memwatch.store.reader import RunReader
from memwatch.store.writer import RunWriter

__all__ = ["RunReader", "RunWriter", "default_run_path", "find_run_files", "resolve_run"]
