"""One parse per user file: text, ``ast`` tree and call index, cached (see the package doc).

Files larger than ``MAX_SOURCE_BYTES`` are not parsed (a generated file is nobody's
loop). Code without a file on disk (notebook cells, ``python -c``) is read through
``linecache``, which is where Python's own tracebacks find it. Nothing here raises into
the caller: an unreadable or invalid file is ``None``.
"""

from __future__ import annotations

import ast
import linecache
import os
from typing import Any

MAX_SOURCE_BYTES = 2_000_000
_MAX_FILES = 64

#: Methods that put something into a container (``x.append(loss)``): the holder is the
#: receiver. Shared by the statement search and the call-site reader.
STORE_METHODS = frozenset(
    {
        "append",
        "appendleft",
        "extend",
        "extendleft",
        "insert",
        "add",
        "update",
        "setdefault",
        "__setitem__",
        "put",
        "put_nowait",
    }
)


class ParsedSource:
    """A parsed file: its text and tree, and (built on first use) its calls by span."""

    __slots__ = ("_calls", "_parents", "text", "tree")

    def __init__(self, text: str, tree: ast.Module) -> None:
        self.text = text
        self.tree = tree
        self._calls: dict[tuple[int, int, int, int], ast.Call] | None = None
        self._parents: dict[int, ast.AST] = {}

    def _index(self) -> dict[tuple[int, int, int, int], ast.Call]:
        if self._calls is None:
            calls: dict[tuple[int, int, int, int], ast.Call] = {}
            for node in ast.walk(self.tree):
                for child in ast.iter_child_nodes(node):
                    self._parents[id(child)] = node
                if isinstance(node, ast.Call) and node.end_lineno is not None:
                    key = (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset or 0)
                    calls.setdefault(key, node)
            self._calls = calls
        return self._calls

    @property
    def calls(self) -> dict[tuple[int, int, int, int], ast.Call]:
        """Call nodes by ``(line, end_line, col, end_col)``: ``co_positions`` spans."""
        return self._index()

    def parent(self, node: ast.AST) -> ast.AST | None:
        self._index()
        return self._parents.get(id(node))

    def calls_on_line(self, line: int) -> list[ast.Call]:
        return [c for key, c in self.calls.items() if key[0] <= line <= key[1]]


_cache: dict[str, tuple[Any, ParsedSource | None]] = {}


def parse_file(filename: str) -> ParsedSource | None:
    """The parsed file, or None when it cannot be read, is too big or is not valid Python."""
    try:
        stat = os.stat(filename)
        stamp: Any = (stat.st_size, stat.st_mtime_ns)
        from_disk = True
    except OSError:
        lines = linecache.getlines(filename)
        if not lines:
            return None
        stamp = ("linecache", len(lines), hash("".join(lines)))
        from_disk = False
    cached = _cache.get(filename)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    parsed: ParsedSource | None = None
    try:
        if from_disk:
            if stat.st_size > MAX_SOURCE_BYTES:
                raise ValueError("too big")
            with open(filename, encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = "".join(linecache.getlines(filename))
        parsed = ParsedSource(text, ast.parse(text, filename))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    if len(_cache) > _MAX_FILES:
        _cache.clear()
    _cache[filename] = (stamp, parsed)
    return parsed
