"""Reading the user's source at a call site: which names a call involves.

A finding must name the variable to change (``loss`` in ``loss.backward(retain_graph=True)``,
``outputs`` in ``outputs.append(model(x))``). The frame only knows the line; Python 3.11+
also knows the exact span of the instruction being executed (``co_positions``), so we
pick the call node with that span from the file's call index (``memwatch.source.files``).
Everything is cached and only used on rare paths (when a probe is about to emit evidence), never per
step. Nothing here imports torch; nothing here may raise into the caller.
"""

from __future__ import annotations

import ast
import weakref
from dataclasses import dataclass
from types import CodeType, FrameType

from memwatch.source.files import STORE_METHODS, ParsedSource, parse_file

_MAX_NAME = 60


@dataclass(frozen=True, slots=True)
class CallSite:
    """The names around one call: ``holder = receiver.method(first_arg)`` or ``callee(...)``."""

    callee: str | None  # the called expression: ``model`` in ``model(x)``
    receiver: str | None  # ``loss`` in ``loss.backward()``; None for a plain function call
    method: str | None  # ``backward`` in ``loss.backward()``
    first_arg: str | None  # ``loss`` in ``torch.autograd.backward(loss)``
    holder: str | None  # ``out`` in ``out = model(x)``, ``preds`` in ``preds.append(model(x))``


_positions: weakref.WeakKeyDictionary[CodeType, list[tuple[int | None, ...]]] = (
    weakref.WeakKeyDictionary()
)
_sites: dict[tuple[str, int, int], CallSite | None] = {}


def _span(code: CodeType, lasti: int) -> tuple[int | None, ...] | None:
    get = getattr(code, "co_positions", None)  # Python 3.11+
    if get is None or lasti < 0:
        return None
    positions = _positions.get(code)
    if positions is None:
        positions = list(get())
        _positions[code] = positions
    index = lasti // 2
    return positions[index] if index < len(positions) else None


def _name(node: ast.AST | None) -> str | None:
    if node is None:
        return None
    try:
        text = ast.unparse(node)
    except Exception:
        return None
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 3] + "..."


def _holder(parsed: ParsedSource, call: ast.Call) -> str | None:
    """The name the call's result itself is stored into, if the statement says so.

    Only a direct store counts (``out = f(x)``, ``outs.append(f(x))``, ``total += f(x)``):
    in ``acc += f(x).mean().item()`` the result is not what ``acc`` holds.
    """
    parent = parsed.parent(call)
    if (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Attribute)
        and parent.func.attr in STORE_METHODS
        and any(arg is call for arg in parent.args)
    ):
        return _name(parent.func.value)
    if isinstance(parent, ast.Assign) and parent.value is call:
        target = parent.targets[0]
        if isinstance(target, (ast.Tuple, ast.List)) and target.elts:
            target = target.elts[0]
        return _name(target)
    if isinstance(parent, (ast.AugAssign, ast.AnnAssign)) and parent.value is call:
        return _name(parent.target)
    return None


def _describe(parsed: ParsedSource, call: ast.Call) -> CallSite:
    func = call.func
    receiver = method = None
    if isinstance(func, ast.Attribute):
        receiver, method = _name(func.value), func.attr
    first = _name(call.args[0]) if call.args else None
    if first is None and call.keywords:
        first = _name(call.keywords[0].value)
    return CallSite(_name(func), receiver, method, first, _holder(parsed, call))


def call_site(frame: FrameType, method: str | None = None) -> CallSite | None:
    """The call that ``frame`` is executing right now (it is inside the callee)."""
    try:
        return call_site_at(frame.f_code, frame.f_lasti, frame.f_lineno, method)
    except Exception:
        return None


def call_site_at(
    code: CodeType, lasti: int, line: int, method: str | None = None
) -> CallSite | None:
    """The call at instruction ``lasti`` (line ``line``) of ``code``.

    Probes keep ``(code, lasti, line)`` rather than the frame, because a frame keeps the
    user's locals (tensors) alive. ``method`` narrows the line-based fallback (Python
    3.10, or a span that matches no call node) to calls of that attribute name. Returns
    None when the source is missing or cannot be parsed.
    """
    try:
        key = (code.co_filename, line, lasti)
        if key in _sites:
            return _sites[key]
        site = _find(code, lasti, line, method)
        if len(_sites) > 4096:
            _sites.clear()
        _sites[key] = site
        return site
    except Exception:
        return None


def _find(code: CodeType, lasti: int, line: int, method: str | None) -> CallSite | None:
    parsed = parse_file(code.co_filename)
    if parsed is None:
        return None
    span = _span(code, lasti)
    if span is not None and None not in span:
        call = parsed.calls.get(span)  # type: ignore[arg-type]
        if call is not None:
            return _describe(parsed, call)
    candidates = parsed.calls_on_line(line)
    if method is not None:
        named = [
            c for c in candidates if isinstance(c.func, ast.Attribute) and c.func.attr == method
        ]
        candidates = named or candidates
    if not candidates:
        return None
    # The outermost call on the line is the statement's; the innermost is usually ours.
    candidates.sort(key=lambda c: (c.lineno, c.col_offset, -(c.end_col_offset or 0)))
    return _describe(parsed, candidates[-1] if method is None else candidates[0])
