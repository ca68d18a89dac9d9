"""Finding the user's statement responsible for a measurement, by reading the source.

The collectors know *which* name holds memory (``running_loss``, ``model.cache``) and in
which function or class it lives; a person needs the *line to change*:
``running_loss += loss``, ``losses.append(loss)``, ``self.cache = torch.cat([...])``.
That line is found with ``ast`` rather than from the stack, because at the moment memwatch
looks (a step end) the statement that extended the holder has long finished running.

Pure Python, no torch; files are parsed once through ``memwatch.source.files``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from memwatch.source.files import STORE_METHODS, parse_file

_TEXT_LIMIT = 160


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement that extends a holder, and what kind of extension it is.

    ``pattern`` is one of:

    * ``augassign`` — ``total += loss``
    * ``accumulate`` — ``total = total + loss`` (arithmetic on the holder itself)
    * ``concat`` — ``cache = torch.cat([cache, out])`` (a call that gets the holder back)
    * ``carry`` — ``out, hidden = model(x, hidden)`` (state fed back into the model)
    * ``store`` — ``losses.append(loss)``, ``cache[key] = out``
    * ``method-call`` — ``meter.update(loss)`` (the holder's owner stores it internally)
    * ``assign`` — ``x = ...`` (plain binding; the last resort)

    ``operands`` are the source texts of what is added/stored (``loss``), so a fix can be
    spelled out (``loss.item()``).
    """

    file: str
    line: int
    function: str
    text: str
    pattern: str
    operands: tuple[str, ...] = ()


# -- scopes ------------------------------------------------------------------------------
_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _own_statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a scope, descending into blocks but not into nested defs/classes."""
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPE_NODES):
            continue
        yield node
        children = [
            child
            for field in ("body", "orelse", "finalbody", "handlers", "cases")
            for child in getattr(node, field, ()) or ()
        ]
        for child in reversed(children):
            if isinstance(child, ast.stmt):
                stack.append(child)
            else:  # except handlers, match cases: their bodies
                stack.extend(reversed(getattr(child, "body", [])))


def _function_node(
    tree: ast.Module, first_line: int, name: str
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The def whose code object starts at ``first_line`` (the first decorator, if any)."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if start == first_line or node.lineno == first_line:
                return node
            if best is None:
                best = node
    return best


def _class_nodes(tree: ast.Module, class_name: str) -> list[ast.ClassDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name]


# -- matching ----------------------------------------------------------------------------
def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _mentions(node: ast.AST, target: str) -> bool:
    return any(
        dotted(n) == target for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))
    )


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        flat: list[ast.expr] = []
        for target in node.targets:
            if isinstance(target, (ast.Tuple, ast.List)):
                flat.extend(target.elts)
            else:
                flat.append(target)
        return flat
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return [node.target]
    return []


def _segment(text: str, node: ast.AST) -> str:
    segment = ast.get_source_segment(text, node) or ""
    segment = " ".join(line.strip() for line in segment.splitlines())
    return segment if len(segment) <= _TEXT_LIMIT else segment[: _TEXT_LIMIT - 3] + "..."


def _operands(text: str, value: ast.AST, target: str) -> tuple[str, ...]:
    """What a statement adds to ``target``: the operands that are not the target itself."""
    if isinstance(value, ast.BinOp):
        parts: list[ast.AST] = []
        stack: list[ast.AST] = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.BinOp):
                stack.extend([node.right, node.left])
            else:
                parts.append(node)
        return tuple(_segment(text, p) for p in parts if dotted(p) != target)
    if isinstance(value, (ast.List, ast.Tuple)):
        return tuple(_segment(text, e) for e in value.elts if dotted(e) != target)
    if isinstance(value, ast.Call):
        args = [a for a in value.args if dotted(a) != target]
        if len(value.args) == 1 and isinstance(value.args[0], (ast.List, ast.Tuple)):
            return _operands(text, value.args[0], target)
        return tuple(_segment(text, a) for a in args)
    return (_segment(text, value),)


_CONCAT_FUNCS = frozenset({"cat", "concat", "concatenate", "stack", "vstack", "hstack", "append"})


def _value_pattern(value: ast.expr, target: str, several_targets: bool) -> tuple[str, ast.expr]:
    """How an assigned value that mentions ``target`` extends it, and the part that does."""
    if isinstance(value, ast.IfExp):  # ``x = out if x is None else torch.cat([x, out])``
        branch = value.orelse if _mentions(value.orelse, target) else value.body
        if _mentions(branch, target):
            return _value_pattern(branch, target, several_targets)
    if isinstance(value, ast.BinOp):
        return "accumulate", value
    if isinstance(value, ast.Call):
        func = dotted(value.func) or ""
        if not several_targets and func.rsplit(".", 1)[-1] in _CONCAT_FUNCS:
            return "concat", value
        return "carry", value
    return "accumulate", value


def _item_of(node: ast.AST, target: str) -> bool:
    """``target[...]``: an item of the holder (``epoch_loss[key]``, ``logs["z"]``)."""
    return isinstance(node, ast.Subscript) and dotted(node.value) == target


def _keys_of(node: ast.stmt, target: str) -> set[object]:
    """The constant keys of ``target[...]`` the statement mentions (``"z"`` in ``logs["z"]``)."""
    keys: set[object] = set()
    for sub in ast.walk(node):
        if _item_of(sub, target) and isinstance(sub.slice, ast.Constant):  # type: ignore[attr-defined]
            keys.add(sub.slice.value)  # type: ignore[attr-defined]
    return keys


def _classify(node: ast.stmt, target: str, text: str) -> tuple[str, tuple[str, ...]] | None:
    """(pattern, operands) when ``node`` extends or rebinds ``target``, else None."""
    if isinstance(node, ast.AugAssign) and (
        dotted(node.target) == target or _item_of(node.target, target)
    ):
        return "augassign", _operands(text, node.value, target)
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        names = [dotted(t) for t in _targets(node)]
        if target in names:
            if _mentions(node.value, target):
                pattern, part = _value_pattern(node.value, target, len(names) > 1)
                return pattern, _operands(text, part, target)
            return "assign", (_segment(text, node.value),)
        for t in _targets(node):
            if isinstance(t, ast.Subscript) and dotted(t.value) == target:
                return "store", (_segment(text, node.value),)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in STORE_METHODS
            and (dotted(func.value) == target or _item_of(func.value, target))
        ):
            return "store", tuple(_segment(text, a) for a in node.value.args)
    return None


_PRIORITY = {
    "augassign": 0,
    "accumulate": 0,
    "concat": 0,
    "carry": 1,
    "store": 0,
    "method-call": 2,
    "assign": 3,
}


def _search(
    statements: Sequence[ast.stmt],
    text: str,
    target: str,
    prefer: Sequence[str],
    function: str,
    filename: str,
    near_line: int | None,
    key: object = None,
) -> Statement | None:
    found: list[tuple[tuple[int, int, int, int], Statement]] = []
    base = target.rsplit(".", 1)[0] if "." in target else None
    for node in statements:
        result = _classify(node, target, text)
        if result is None and base is not None and isinstance(node, ast.Expr):
            call = node.value
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and dotted(call.func.value) == base
            ):
                result = "method-call", tuple(_segment(text, a) for a in call.args)
        if result is None:
            continue
        pattern, operands = result
        mentions_preferred = any(_mentions(node, p) for p in prefer)
        distance = abs(node.lineno - near_line) if near_line is not None else 0
        other_key = 0 if key is None or key in _keys_of(node, target) else 1
        rank = (_PRIORITY.get(pattern, 9), other_key, 0 if mentions_preferred else 1, distance)
        found.append(
            (
                rank,
                Statement(filename, node.lineno, function, _segment(text, node), pattern, operands),
            )
        )
    if not found:
        return None
    found.sort(key=lambda item: item[0])
    return found[0][1]


def find_in_function(
    filename: str,
    first_line: int,
    function: str,
    target: str,
    prefer: Sequence[str] = (),
    near_line: int | None = None,
    key: object = None,
) -> Statement | None:
    """The statement in a function (or at module level for ``<module>``) extending ``target``.

    ``first_line``/``function`` identify the scope as a code object does (``co_firstlineno``,
    ``co_name``). ``prefer`` names tensors the statement likely stores (``loss``): a
    statement mentioning one wins a tie. ``near_line`` breaks the remaining ties.
    ``key``: the holder's item that grows (``logs["z"]``): a statement storing into that
    item wins.
    """
    scope = _scope_body(filename, first_line, function)
    if scope is None:
        return None
    body, text = scope
    return _search(
        list(_own_statements(body)), text, target, prefer, function, filename, near_line, key
    )


def find_in_class(
    filename: str, class_name: str, target: str, prefer: Sequence[str] = (), key: object = None
) -> Statement | None:
    """The statement in any method of ``class_name`` extending ``target`` (``self.cache``)."""
    parsed = parse_file(filename)
    if parsed is None:
        return None
    tree, text = parsed.tree, parsed.text
    best: Statement | None = None
    for cls in _class_nodes(tree, class_name):
        for method in cls.body:
            if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            found = _search(
                list(_own_statements(method.body)),
                text,
                target,
                prefer,
                method.name,
                filename,
                None,
                key,
            )
            if found is not None and (
                best is None
                or _rank_in_file(found, target, key, tree) < _rank_in_file(best, target, key, tree)
            ):
                best = found
    return best


def find_in_file(
    filename: str, target: str, prefer: Sequence[str] = (), key: object = None
) -> Statement | None:
    """The statement anywhere in a file extending the global ``target`` (``ACTIVATIONS``).

    Used for module-level holders, which are typically extended from a hook or helper
    defined elsewhere in the script than the training loop.
    """
    parsed = parse_file(filename)
    if parsed is None:
        return None
    tree, text = parsed.tree, parsed.text
    scopes: list[tuple[str, Sequence[ast.stmt]]] = [("<module>", tree.body)]
    scopes.extend(
        (node.name, node.body)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )
    best: Statement | None = None
    for name, body in scopes:
        found = _search(
            list(_own_statements(body)), text, target, prefer, name, filename, None, key
        )
        if found is None or found.pattern == "assign":
            continue
        if best is None or _rank_in_file(found, target, key, tree) < _rank_in_file(
            best, target, key, tree
        ):
            best = found
    return best


def _rank_in_file(found: Statement, target: str, key: object, tree: ast.Module) -> tuple[int, int]:
    """Across scopes: the statement storing into the wanted item first, then by pattern."""
    other_key = 0
    if key is not None:
        other_key = 1
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and getattr(node, "lineno", None) == found.line:
                if key in _keys_of(node, target):
                    other_key = 0
                break
    return other_key, _PRIORITY[found.pattern]


def _scope_body(
    filename: str, first_line: int, function: str
) -> tuple[Sequence[ast.stmt], str] | None:
    """The statements of a scope as a code object names it, and the file's text."""
    parsed = parse_file(filename)
    if parsed is None:
        return None
    tree, text = parsed.tree, parsed.text
    if function == "<module>":
        return tree.body, text
    node = _function_node(tree, first_line, function)
    return (node.body, text) if node is not None else None


def find_assignment(filename: str, first_line: int, function: str, name: str) -> Statement | None:
    """Where a local is bound (``recon = model(x)``): the first assignment in its scope."""
    scope = _scope_body(filename, first_line, function)
    if scope is None:
        return None
    body, text = scope
    for stmt in _own_statements(body):
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and name in [
            dotted(t) for t in _targets(stmt)
        ]:
            return Statement(filename, stmt.lineno, function, _segment(text, stmt), "assign", ())
    return None
