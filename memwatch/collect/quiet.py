"""Keep torch's warning about memwatch's own global module hooks inside memwatch.

``torch.compile(module)`` warns on every call of the compiled module while any global
module hook is registered. Under a watch the only such hooks may be memwatch's, so the
warning speaks about memwatch, not about the user's code, and under ``-W error`` (or
pytest's ``filterwarnings = error``) it would become an exception in the user's forward
pass. While the watch runs, a filter that ignores exactly that message sits first in the
filter list; it is taken out again when the watch stops (and only it: filters the program
added meanwhile stay).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

#: The start of torch's message (torch/_dynamo/eval_frame.py, OptimizedModule.__call__).
GLOBAL_HOOK_WARNING = re.escape("Using `torch.compile(module)` when there are global hooks")


def hide_global_hook_warning() -> Callable[[], None]:
    """Install the filter; returns the function that removes it again."""
    warnings.filterwarnings("ignore", message=GLOBAL_HOOK_WARNING, category=UserWarning)
    entry = warnings.filters[0]

    def restore() -> None:
        try:
            warnings.filters.remove(entry)  # type: ignore[attr-defined]
        except ValueError:
            pass  # a warnings.catch_warnings() block already restored an older list
        mutated = getattr(warnings, "_filters_mutated", None)  # resets the once-registry
        if mutated is not None:
            mutated()

    return restore
