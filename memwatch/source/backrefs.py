"""Finding the statement that closes a reference cycle (``self.which_act = self.relu_act``,
``Storage(..., _parent=self)``, ``self.register_forward_hook(fw_hook)``).

The collector knows the cycle's path as names (``.which_act``, ``._parent``, the
function ``fw_hook``) and the classes of the objects on it; the line a person changes is
where one of those names is *stored*: an assignment to ``x.<name>``, a keyword argument
``<name>=...``, ``setattr(x, "<name>", ...)``, a function passed as an argument
(``register_forward_hook(fw_hook)``), or a container store on ``x.<name>``
(``node.children.append(child)``). The search looks in each class's own body first, then
in the rest of its file.

Pure Python, no torch; files are parsed once through ``memwatch.source.files``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memwatch.source.files import STORE_METHODS, parse_file


@dataclass(frozen=True, slots=True)
class BackReference:
    """Where a name on a cycle is stored: file, line, enclosing function, the name."""

    file: str
    line: int
    function: str
    name: str


def _stores(node: ast.AST, name: str) -> bool:
    """Whether statement-level ``node`` stores something under ``name``."""
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr == name:
                    return True
                if (
                    isinstance(sub, ast.Subscript)
                    and isinstance(sub.slice, ast.Constant)
                    and sub.slice.value == name
                ):
                    return True
        value = node.value
        if isinstance(value, ast.Name) and value.id == name and not _declares(node):
            return True
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        if any(k.arg == name for k in sub.keywords):
            return True
        if any(isinstance(a, ast.Name) and a.id == name for a in sub.args):
            return True
        func = sub.func
        if isinstance(func, ast.Name) and func.id == "setattr" and len(sub.args) >= 2:
            key = sub.args[1]
            if isinstance(key, ast.Constant) and key.value == name:
                return True
        if (
            isinstance(func, ast.Attribute)
            and func.attr in STORE_METHODS
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == name
        ):
            return True
    return False


def _declares(node: ast.AST) -> bool:
    return isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)


_BLOCKS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)


def _statements(root: ast.AST) -> Iterable[tuple[ast.stmt, str]]:
    """Every simple statement under ``root`` with the name of its enclosing function."""
    stack: list[tuple[ast.AST, str]] = [(root, getattr(root, "name", "<module>"))]
    while stack:
        node, function = stack.pop()
        for child in reversed(list(ast.iter_child_nodes(node))):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append((child, child.name))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, function))
            elif isinstance(child, ast.stmt):
                if isinstance(child, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
                    stack.append((child, function))
                else:
                    yield child, function


def _class_node(tree: ast.Module, name: str, line: int) -> ast.ClassDef | None:
    best: ast.ClassDef | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            end = node.end_lineno or node.lineno
            if line <= 0 or node.lineno <= line <= end:
                return node
            best = best or node
    return best


def find_back_reference(
    classes: Sequence[tuple[str, str, int]], names: Sequence[str]
) -> BackReference | None:
    """The first statement storing one of ``names`` (in that order of preference),
    searched in each class's body (``(file, class name, a line inside it)``), then in
    the rest of those files. None when no file can be read or nothing matches."""
    for scope in ("class", "file"):
        for name in names:
            for filename, class_name, line in classes:
                parsed = parse_file(filename)
                if parsed is None:
                    continue
                root: ast.AST | None = parsed.tree
                if scope == "class":
                    root = _class_node(parsed.tree, class_name, line)
                if root is None:
                    continue
                for statement, function in _statements(root):
                    if _stores(statement, name):
                        return BackReference(filename, statement.lineno, function, name)
    return None
