"""Evidence for ``graph-accumulation``: a holder whose autograd history grows every step.

``total += loss``, ``losses.append(loss)``, an RNN hidden state that is never detached,
``meter.update(loss)`` or ``self.cache = torch.cat([self.cache, out])`` all keep every
step's graph alive through one name. The check must be cheap enough for every step and
must not keep anything alive itself, so it rests on three facts measured on torch 2.13:

* Nothing of ours is attached to the user's graph. A leaked graph keeps whatever hangs
  on its nodes for as long as the leak lasts, so an object in a node's ``metadata`` (or a
  hook) would grow with the user's leak; worse, merely reading ``metadata`` makes torch
  build per-node metadata, which took a ``total += loss`` leak from ~6 to ~16 KiB of RSS
  per step (issue 11). Nodes are not weakref-able and their ``id`` is reused, so we
  remember only a node's sequence number and search for it (next point).
* Every node has a ``_sequence_nr()`` from a per-thread counter that only grows, and a
  node's inputs are always older than the node. So "does this step's graph of ``x``
  contain last step's root of ``x``?" is a BFS that prunes every node older than that
  root: it visits the nodes made since (one step's graph), bounded at ``BFS_CAP``. The
  only trace it leaves on a leaked graph is torch's own Python wrapper of each node
  visited (~50 B; torch keeps a node's wrapper alive as long as the node).
* ``torch._C._autograd._get_sequence_nr()`` read at each step end gives watermarks that map
  any node to the step in which it was created; a bounded walk uses them to measure how
  many earlier steps the history spans (``history_steps``).

The probe records ``memwatch.evidence.GraphAccumulation`` at a name's first hits and then
every few steps; the ``graph-accumulation`` detector decides whether the hits prove a
leak (a history spanning two earlier steps, or two hits in a row: not one carried-over
graph, as in truncated BPTT with a window of two).

Containers (``losses.append(loss)``) are judged by identity: the same container still
holds last step's last element and gained a new one with a ``grad_fn``. A list rebuilt
each step — e.g. an episode that is longer every step — is never confused with it.

Nothing here keeps a tensor or node alive across steps (only ints and weakrefs to
tensors), and nothing here is kept alive by one.
"""

from __future__ import annotations

import bisect
import inspect
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import torch

from memwatch.collect.frames import display_path
from memwatch.collect.holders import Entry, FrameInfo, Scan, first_tensor
from memwatch.evidence import GraphAccumulation
from memwatch.notices import notice
from memwatch.records import Location
from memwatch.source.statements import (
    Statement,
    find_in_class,
    find_in_file,
    find_in_function,
)

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

MAX_SEQ = 1 << 62  # AccumulateGrad / GraphRoot nodes carry UINT64_MAX
BFS_CAP = 512
WALK_CAP = 4096
#: When to record (cost triggers, not verdicts): each of a name's first hits, then every
#: ``REEMIT_EVERY`` steps with fresh numbers. Whether the hits prove a leak is the
#: ``graph-accumulation`` detector's decision.
RECORD_FIRST_HITS = 2
REEMIT_EVERY = 8
#: A name whose graph was recorded growing is searched again only this often, one or two
#: links along its chain (``_check_tensor``, ``_reaches_back``): the wrappers torch makes
#: for the nodes a search visits stay with the leaked graph.
CONFIRMED_RECHECK = 32
#: What the ``graph-accumulation`` detector calls proven (its MIN_HIT_STREAK and
#: MIN_HISTORY_STEPS; collection does not import the detectors).
PROVEN_HIT_STREAK = 2
PROVEN_HISTORY_STEPS = 2
#: Searches in a row without a hit after which a name is searched every other step only.
QUIET_MISSES = 8
#: ... at most this many steps apart (a longer gap delays a leak that starts later on a
#: name that already carried a graph: ``running * 0.9 + loss`` once ``detach()`` is gone).
QUIET_MAX_GAP = 2
#: ... and, when its last search ran into ``BFS_CAP`` (a graph of more than that many nodes a
#: step: the loss of a long unroll or of an RL episode), only this many nodes deep (breadth
#: first). A leak that starts late on such a name (``total += loss`` once an ``.item()``
#: went away, a running average that lost its ``detach()``) reaches last step's root in a
#: link or two, while the full search visits ``BFS_CAP`` nodes every other step (~0.5 ms: 2 %
#: of a 25 ms step of 200 forwards) and can find no deeper link than this one either.
QUIET_BFS_CAP = 64
QUIET_GAP_UNDER_LEAK = 16
#: Roots noted per ``backward()`` call and per step (``note_backward``): bounded, whatever
#: a loop of micro-batches does.
CONSUMED_PER_BACKWARD = 4
MAX_CONSUMED = 64
FORGET_AFTER = 8
MAX_TRACKS = 512
MAX_MARKS = 4096
#: host bytes one autograd node costs with its small outputs (measured: ~750 B/node on
#: torch 2.13 CPU for mm/relu/sum/add chains); a graph's device memory is the tensors.
NODE_BYTES_ESTIMATE = 700


def _peek_sequence_nr() -> int | None:
    """The thread's next autograd sequence number (private ``_get_sequence_nr``, looked up
    at each use); None on a torch without it: the watermarks then fall back to the highest
    node number seen, so steps are attributed a little later but nothing is lost."""
    peek = getattr(getattr(torch._C, "_autograd", None), "_get_sequence_nr", None)
    return int(peek()) if peek is not None else None


class _NoSequenceNumbers(Exception):
    """This torch's autograd nodes have no ``_sequence_nr()``: the check cannot run."""


def _sequence_nr(node: Any) -> int:
    """A node's creation number (private ``Node._sequence_nr()``)."""
    method = getattr(node, "_sequence_nr", None)
    if method is None:
        raise _NoSequenceNumbers
    return int(method())


@dataclass(slots=True)
class _Track:
    """What we remember of one name between steps (never the tensor itself)."""

    seq: int
    last_seen: int
    first_seen: int
    first_bytes: int
    hit_streak: int = 0
    hits: int = 0
    history_steps: int = 0  # most earlier steps one graph walk of this name reached
    first_step: int | None = None
    last_emit: int = -1
    nodes_per_step: int = 0
    nodes_capped: bool = False
    walked: tuple[int, bool, int] = (0, False, 0)  # the last walk (first hits): nodes, capped, step
    misses: int = 0  # searches in a row that did not reach the previous root
    searched_at: int = -1
    length: int = 0  # containers
    start_length: int = 0  # containers: the length before the growing streak
    last_ref: Any = None  # containers: weakref to the last element's tensor
    last_key: Any = None  # dicts: the last key (ints/strings only)
    located: bool = False
    statement: Statement | None = None
    armed: bool = False  # a recorded leak's root was read for its next re-check
    search_capped: bool = False  # the last full search ran into BFS_CAP (a big graph)
    consumed: bool = False  # ``seq`` is a root a backward() freed the graph of


class GraphChecker:
    """Runs at every step end on the holder scan; emits ``graph-accumulation`` events."""

    def __init__(self) -> None:
        self._tracks: dict[tuple[Any, str], _Track] = {}
        self._marks: list[int] = []  # watermark (sequence nr) at the end of each step
        self._mark_steps: list[int] = []
        self._max_seen = 0
        self._passes = 0
        #: something is suspicious (a new name with a graph, a hit): check the next step too
        self.eager = False
        #: steps between two searches of a quiet name (``QUIET_MAX_GAP``; the holders
        #: probe doubles it on steps so short that it checks every other step end only)
        self.quiet_gap = QUIET_MAX_GAP
        #: a recorded leak is going on (``_proven`` at the last pass)
        self._leaking = False
        #: this torch's nodes have no ``_sequence_nr()``: the check is off (said once)
        self.unsupported = False
        #: the sequence numbers of the roots ``backward()`` ran from at this step without
        #: keeping their graph (the holders probe fills it, and empties it at the step end)
        self.consumed: set[int] = set()

    # -- backward roots ------------------------------------------------------------------------
    def note_backward(self, tensors: Any) -> None:
        """A ``backward()`` that keeps no graph ran from ``tensors``: remember their roots
        (``consumed``), which ``_check_tensor`` then knows keep no earlier step's graph."""
        if isinstance(tensors, torch.Tensor):
            tensors = (tensors,)
        elif not isinstance(tensors, (tuple, list)):
            return
        consumed = self.consumed
        for tensor in tensors[:CONSUMED_PER_BACKWARD]:
            if len(consumed) >= MAX_CONSUMED:
                return
            if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                try:
                    consumed.add(_sequence_nr(tensor.grad_fn))
                except Exception:  # a shortcut only: without it the search runs
                    return

    # -- watermarks ----------------------------------------------------------------------------
    def _watermark(self) -> int:
        try:
            peeked = _peek_sequence_nr()
        except Exception:
            peeked = None
        return peeked if peeked is not None else self._max_seen

    def _step_of(self, seq: int, current: int) -> int:
        """The step in whose window a node with sequence number ``seq`` was created."""
        # A mark is the *next* sequence number at that step end: a node numbered exactly
        # the mark was created after it, hence bisect_right.
        index = bisect.bisect_right(self._marks, seq)
        return self._mark_steps[index] if index < len(self._marks) else current

    # -- per step -----------------------------------------------------------------------------
    def on_step_end(self, tracker: ProbeHost, scan: Scan) -> None:
        if self.unsupported:
            return
        try:
            self._on_step_end(tracker, scan)
        except _NoSequenceNumbers:
            self.unsupported = True
            self.eager = False
            notice(
                "this torch's autograd nodes have no _sequence_nr(); the "
                "graph-accumulation check is off for this run (the other checks run)"
            )

    def resting(self, code: Any, name: str, step: int) -> bool:
        """Whether a variable's check would only note that it was seen (a quiet name within
        its search gap, see ``_check_tensor``); noted here. The light check on the steps
        the scan skips asks this first and builds nothing for such names."""
        track = self._tracks.get((code, name))
        if track is None or not self._in_quiet_gap(track, step):
            return False
        track.last_seen = step
        return True

    def _in_quiet_gap(self, track: _Track, step: int) -> bool:
        """A name that never reached its previous graph, not due for a search yet."""
        return (
            track.hits == 0
            and track.misses >= QUIET_MISSES
            and step - track.searched_at
            < (QUIET_GAP_UNDER_LEAK if self._leaking else self.quiet_gap)
        )

    def _on_step_end(self, tracker: ProbeHost, scan: Scan) -> None:
        self.eager = False
        step = scan.step
        grad_names = _GradNames(scan)
        for entry in scan.entries:
            if entry.kind == "tensor":
                if entry.grad:
                    self._check_tensor(
                        tracker, scan, entry, entry.name, entry.value, entry.name, step, grad_names
                    )
            elif entry.kind == "container":
                value = entry.value
                if isinstance(value, tuple):
                    if entry.length <= 4:
                        for i, item in enumerate(value):
                            if isinstance(item, torch.Tensor) and item.grad_fn is not None:
                                self._check_tensor(
                                    tracker,
                                    scan,
                                    entry,
                                    f"{entry.name}[{i}]",
                                    item,
                                    entry.name,
                                    step,
                                    grad_names,
                                )
                else:
                    self._check_container(tracker, scan, entry, step, grad_names)
        self.mark(step)
        self._passes += 1
        self._leaking = any(_proven(t) for t in self._tracks.values())
        if len(self._tracks) > 64 or self._passes % FORGET_AFTER == 0:
            stale = [k for k, t in self._tracks.items() if step - t.last_seen > FORGET_AFTER]
            for key in stale:
                del self._tracks[key]

    # -- single tensors ------------------------------------------------------------------------
    def _check_tensor(
        self,
        tracker: ProbeHost,
        scan: Scan,
        entry: Entry,
        name: str,
        tensor: Any,
        variable: str,
        step: int,
        grad_names: _GradNames,
    ) -> None:
        key = (scan.frames[entry.frame_index].code, name)
        track = self._tracks.get(key)
        if track is not None and _proven(track) and not track.armed:
            # A leak already recorded: reading its root or searching it every step would
            # make torch wrap every node it adds, and the leak keep the wrappers (~56 B
            # each: memwatch's memory growing with the user's leak). Every
            # CONFIRMED_RECHECK steps its root is read, and at the next scan the search
            # goes back to that root only: a link or two of the chain.
            track.last_seen = step
            if step - track.searched_at >= CONFIRMED_RECHECK:
                track.seq = _sequence_nr(tensor.grad_fn)
                track.armed = True
                self.eager = True  # the next step is scanned: the search is short
            elif step - track.last_emit >= REEMIT_EVERY:
                # fresh numbers for the report, extrapolated from the walk at the first
                # hits and the nodes a step adds (nothing of the graph is read)
                walked, walk_capped, walked_at = track.walked
                nodes = walked + track.nodes_per_step * (step - walked_at)
                self._emit(
                    tracker,
                    scan,
                    entry,
                    track,
                    name,
                    variable,
                    step,
                    nodes,
                    walk_capped,
                    grad_names,
                )
            return
        if track is not None and self._in_quiet_gap(track, step):
            # A name that never reached its previous graph (``loss``, rebound every step)
            # is searched every other step, and its root is not read in between: a search
            # that finds nothing visits the whole new graph, and when a leak elsewhere
            # keeps that graph, the wrappers torch makes for what we read stay with it. A
            # leak starting later on this name is seen a step later. While a leak is
            # recorded (it keeps every step's graph, these names' included), such names
            # are searched only every QUIET_GAP_UNDER_LEAK steps.
            track.last_seen = step
            return
        root = tensor.grad_fn
        seq = _sequence_nr(root)
        if seq < MAX_SEQ and seq > self._max_seen:
            self._max_seen = seq
        if track is not None and track.seq == seq:
            track.last_seen = step  # the same graph as last step: held, not extended
            return
        if track is None:
            if len(self._tracks) >= MAX_TRACKS:
                return
            track = _Track(seq, step, step, entry.bytes, consumed=seq in self.consumed)
            self._tracks[key] = track
            self.eager = True
            return
        consumed = seq in self.consumed
        # The nodes added this step are counted only when they are reported: a search that
        # stops at the old root wraps (and so keeps, see above) far fewer nodes.
        due = track.hits < RECORD_FIRST_HITS or step - track.last_emit >= REEMIT_EVERY
        confirmed = _proven(track)
        if consumed and track.consumed:
            # ``backward()`` ran from this very tensor at this step without keeping its
            # graph (``loss``), and from the root remembered too: had this graph reached
            # that one, the backward would have gone on into it, whose buffers its own
            # backward freed, and raised. A miss, known without the search (~50 µs for a
            # small MLP's graph, every fourth step).
            hit, new_nodes, capped = False, 0, False
        elif confirmed:
            # the chain since the root read at the last scan, oldest child first
            hit, capped = _reaches_back(root, track.seq)
            new_nodes = track.nodes_per_step
            track.armed = False
        else:
            quiet = track.hits == 0 and track.misses >= QUIET_MISSES and track.search_capped
            hit, new_nodes, capped = _reaches(
                root, track.seq, count=due, cap=QUIET_BFS_CAP if quiet else BFS_CAP
            )
            if not quiet:
                track.search_capped = capped
        track.seq = seq
        track.consumed = consumed
        track.last_seen = step
        track.searched_at = step
        if not hit:
            track.hit_streak = 0
            track.misses += 1
            return
        track.misses = 0
        track.hit_streak += 1
        track.hits += 1
        self.eager = self.eager or not confirmed
        if not due:
            return
        track.nodes_per_step = new_nodes
        track.nodes_capped = capped
        if track.hits <= RECORD_FIRST_HITS:
            nodes, steps, walk_capped = self._walk(root, step)
            track.walked = (nodes, walk_capped, step)
            earlier = sorted(s for s in steps if s < step)
            if earlier and not walk_capped:
                track.first_step = earlier[0]
            else:
                track.first_step = max(track.first_seen, step - track.hit_streak)
            track.history_steps = max(track.history_steps, len(earlier))
        else:
            # Fresh numbers without a new walk: the graph has grown by ``nodes_per_step`` a
            # step since the walk at the first hits, and walking would make torch wrap (and
            # the leak keep) every node added since.
            walked, walk_capped, walked_at = track.walked
            nodes = walked + track.nodes_per_step * (step - walked_at)
        self._emit(
            tracker, scan, entry, track, name, variable, step, nodes, walk_capped, grad_names
        )

    # -- containers ----------------------------------------------------------------------------
    def _check_container(
        self,
        tracker: ProbeHost,
        scan: Scan,
        entry: Entry,
        step: int,
        grad_names: _GradNames,
    ) -> None:
        key = (scan.frames[entry.frame_index].code, entry.name)
        track = self._tracks.get(key)
        container = entry.value
        length = entry.length
        old_length = track.length if track is not None else 0
        hit = False
        if track is not None and length > track.length and entry.grad:
            if track.length == 0:
                hit = True
            else:
                previous = track.last_ref() if track.last_ref is not None else None
                hit = previous is not None and holds_at(
                    container, track.length - 1, track.last_key, previous
                )
        last_tensor = first_tensor(entry.last) if length else None
        last_ref = None
        if last_tensor is not None:
            try:
                last_ref = weakref.ref(last_tensor)
            except TypeError:
                last_ref = None
        last_key = None
        if isinstance(container, dict) and length:
            try:
                candidate = next(reversed(container.keys()))
                if isinstance(candidate, (int, str)):
                    last_key = candidate
            except Exception:
                last_key = None
        if track is None:
            if len(self._tracks) >= MAX_TRACKS:
                return
            track = _Track(
                -1,
                step,
                step,
                entry.bytes,
                length=length,
                last_ref=last_ref,
                last_key=last_key,
            )
            self._tracks[key] = track
            self.eager = self.eager or entry.grad
            return
        track.length = length
        track.last_ref = last_ref
        track.last_key = last_key
        track.last_seen = step
        if not hit:
            if length != old_length:
                track.hit_streak = 0
            return
        if track.hit_streak == 0:
            track.start_length = old_length
        track.hit_streak += 1
        track.hits += 1
        self.eager = True
        if track.hits <= RECORD_FIRST_HITS or step - track.last_emit >= REEMIT_EVERY:
            if last_tensor is not None and last_tensor.grad_fn is not None:
                track.nodes_per_step, track.nodes_capped = _count(last_tensor.grad_fn)
            if track.first_step is None or track.hits <= RECORD_FIRST_HITS:
                track.first_step = self._first_stored_step(container, track, step)
            self._emit(
                tracker,
                scan,
                entry,
                track,
                entry.name,
                entry.name,
                step,
                track.nodes_per_step * length,
                False,
                grad_names,
            )

    def _first_stored_step(self, container: Any, track: _Track, step: int) -> int:
        """The step whose graph the first element stored by the leak belongs to."""
        fallback = max(track.first_seen, step - track.hit_streak)
        if isinstance(container, dict):
            return fallback
        try:
            first = first_tensor(container[track.start_length])
            seq = _sequence_nr(first.grad_fn)
        except Exception:
            return fallback
        return self._step_of(seq, step) if seq < MAX_SEQ else fallback

    def mark(self, step: int) -> None:
        """A step end without a scan: record its watermark so nodes map to the right step."""
        previous = self._marks[-1] if self._marks else -1
        self._marks.append(max(self._watermark(), previous))
        self._mark_steps.append(step)
        if len(self._marks) > MAX_MARKS:
            del self._marks[: MAX_MARKS // 2]
            del self._mark_steps[: MAX_MARKS // 2]

    # -- walking ------------------------------------------------------------------------------
    def _walk(self, root: Any, current: int) -> tuple[int, set[int], bool]:
        """Bounded walk of a whole graph: node count and the steps its nodes come from."""
        queue = [root]
        seen = {id(root)}
        steps: set[int] = set()
        seq = _sequence_nr(root)
        if seq < MAX_SEQ:
            steps.add(self._step_of(seq, current))
        index = 0
        while index < len(queue):
            node = queue[index]
            index += 1
            try:
                children = node.next_functions
            except Exception:
                continue
            for child, _ in children:
                if child is None:
                    continue
                cid = id(child)
                if cid in seen:
                    continue
                seq = _sequence_nr(child)
                if seq >= MAX_SEQ:
                    continue
                seen.add(cid)
                queue.append(child)
                steps.add(self._step_of(seq, current))
                if len(queue) >= WALK_CAP:
                    return len(queue), steps, True
        return len(queue), steps, False

    # -- reporting ----------------------------------------------------------------------------
    def _locate(
        self, scan: Scan, entry: Entry, variable: str, grad_names: _GradNames
    ) -> Statement | None:
        frame = scan.frames[entry.frame_index]
        prefer = [n for n in grad_names.of(entry.frame_index) if n != variable]
        return locate_statement(frame, entry, entry.target or variable, prefer)

    def _emit(
        self,
        tracker: ProbeHost,
        scan: Scan,
        entry: Entry,
        track: _Track,
        name: str,
        variable: str,
        step: int,
        nodes: int,
        nodes_capped: bool,
        grad_names: _GradNames,
    ) -> None:
        if not track.located:
            track.located = True
            try:
                track.statement = self._locate(scan, entry, variable, grad_names)
            except Exception:
                track.statement = None
        frame = scan.frames[entry.frame_index]
        statement = track.statement
        location = statement_location(statement) if statement is not None else frame.location
        span = max(1, step - track.first_seen)
        tensor_growth = max(0, (entry.bytes - track.first_bytes) // span)
        evidence = GraphAccumulation(
            variable=variable,
            holder=name,
            scope=entry.scope,
            owner_class=entry.owner_type.__name__ if entry.owner_type is not None else None,
            container=entry.kind == "container" and not isinstance(entry.value, tuple),
            is_tuple=isinstance(entry.value, tuple),
            length=entry.length,
            nodes_per_step=track.nodes_per_step,
            nodes_per_step_capped=track.nodes_capped,
            nodes=nodes,
            nodes_capped=nodes_capped,
            first_step=track.first_step,
            hit_streak=track.hit_streak,
            history_steps=track.history_steps,
            steps_seen=track.hits,
            tensor_bytes=entry.bytes,
            tensor_growth_per_step=tensor_growth,
            node_bytes_estimate=NODE_BYTES_ESTIMATE,
            saved_stale_bytes=int(getattr(tracker.saved, "stale_bytes", 0)),
            frame_function=frame.function,
            frame_line=frame.line,
            frame_file=display_path(frame.filename),
            **statement_fields(statement),
        )
        if track.hits <= RECORD_FIRST_HITS:
            tracker.analysis_requested = True  # possibly newly proven: judge it now
        track.last_emit = step
        tracker.emit(evidence.event(step, location))


class _GradNames:
    """Per frame, the variables holding tensors with a graph (computed only when needed)."""

    def __init__(self, scan: Scan) -> None:
        self._scan = scan
        self._names: dict[int, list[str]] | None = None

    def of(self, frame_index: int) -> list[str]:
        if self._names is None:
            self._names = {}
            for entry in self._scan.entries:
                if entry.kind == "tensor" and entry.grad and entry.scope in ("local", "global"):
                    self._names.setdefault(entry.frame_index, []).append(entry.name)
        return self._names.get(frame_index, [])


# -- helpers shared with the growth probe ------------------------------------------------------
def statement_location(statement: Statement) -> Location:
    return Location(display_path(statement.file), statement.line, statement.function)


class StatementFields(TypedDict):
    """The evidence fields that describe the statement extending a holder."""

    statement: str | None
    pattern: str | None
    operands: tuple[str, ...]


def statement_fields(statement: Statement | None) -> StatementFields:
    """``statement``/``pattern``/``operands`` for ``GraphAccumulation``/``HolderGrowth``."""
    if statement is None:
        return {"statement": None, "pattern": None, "operands": ()}
    return {
        "statement": statement.text,
        "pattern": statement.pattern,
        "operands": tuple(statement.operands),
    }


def locate_statement(
    frame: FrameInfo, entry: Entry, target: str, prefer: list[str]
) -> Statement | None:
    """The user's statement that extends ``target`` (see ``memwatch.source.statements``).

    Locals and attributes of locals are searched in the frame's function; module
    attributes in the owner's class (``self.cache = ...``); globals in the whole file
    (they are often extended from a hook defined elsewhere).
    """
    if entry.statement is not None:
        return entry.statement  # known without searching (a decorator's line)
    if entry.census:
        return _locate_census(frame, entry, entry.target or target, prefer)
    found: Statement | None = None
    if entry.scope == "module" and entry.owner_type is not None and entry.attr:
        filename = _class_file(entry.owner_type)
        if filename:
            found = find_in_class(filename, entry.owner_type.__name__, f"self.{entry.attr}", prefer)
    if found is None:
        found = find_in_function(
            frame.filename, frame.first_line, frame.function, target, prefer, near_line=frame.line
        )
        if found is not None and found.pattern == "assign":
            found = None
    if found is None and entry.scope == "attribute" and entry.owner_type is not None and entry.attr:
        filename = _class_file(entry.owner_type)
        if filename:
            found = find_in_class(filename, entry.owner_type.__name__, f"self.{entry.attr}", prefer)
    if found is None and entry.scope in ("global", "module"):
        found = find_in_file(frame.filename, target, prefer)
    return found


def _extends(found: Statement | None) -> Statement | None:
    """A statement that extends the holder (a plain binding is not where it grows)."""
    return found if found is not None and found.pattern not in ("assign", "method-call") else None


def _locate_census(
    frame: FrameInfo, entry: Entry, target: str, prefer: list[str]
) -> Statement | None:
    """The statement extending a holder the census found.

    In order: the owner's class (``self._memo[index] = ...`` for ``data._memo``), the
    frame's function (``logs["z"].append`` for ``logs['z']``), the class files along the
    attribute path (``self.state.values.append`` in ``Tracker`` for
    ``tracker.state.values``), then anywhere in the frame's file (a helper storing into a
    parameter named like the holder: ``_log_metrics(logs, ...)``).
    """
    key = entry.key
    owner = entry.owner_type
    files: list[str] = []
    if owner is not None and entry.attr:
        filename = _class_file(owner)
        if filename:
            files.append(filename)
            found = _extends(find_in_class(filename, owner.__name__, f"self.{entry.attr}", prefer))
            if found is not None:
                return found
    found = _extends(
        find_in_function(
            frame.filename,
            frame.first_line,
            frame.function,
            target,
            prefer,
            near_line=frame.line,
            key=key,
        )
    )
    if found is not None:
        return found
    if frame.filename not in files:
        files.append(frame.filename)
    parts = entry.name.split(".")
    if len(parts) > 2 and all(p.isidentifier() for p in parts):
        for start in range(1, len(parts) - 1):
            suffix = "self." + ".".join(parts[start:])
            for filename in files:
                found = _extends(find_in_file(filename, suffix, prefer))
                if found is not None:
                    return found
    for filename in files:
        found = _extends(find_in_file(filename, target, prefer, key))
        if found is not None:
            return found
    return None


def _class_file(owner: type) -> str | None:
    try:
        return inspect.getsourcefile(owner)
    except (TypeError, OSError):
        return None


def _proven(track: _Track) -> bool:
    """A growth the detector will call proven (``graph_accumulation.MIN_*``), still going
    at the last search: only such a name is re-checked sparsely (``_check_tensor``)."""
    return track.hit_streak > 0 and (
        track.hit_streak >= PROVEN_HIT_STREAK or track.history_steps >= PROVEN_HISTORY_STEPS
    )


def _reaches_back(root: Any, target: int) -> tuple[bool, bool]:
    """Whether ``root``'s graph contains the node numbered ``target``, searched depth first,
    oldest child first: (found, capped).

    For a leak already recorded, ``target`` is its root a step or two ago and lies down the
    chain the leak adds to (``total``'s ``AddBackward`` nodes); the oldest child not older
    than ``target`` is the next link, so the search walks the chain and its direct
    branches instead of every node added since, as a breadth-first search would (torch
    wraps every node read, and the leak keeps the wrappers).
    """
    stack = [root]
    seen = {id(root)}
    while stack:
        node = stack.pop()
        try:
            children = node.next_functions
        except Exception:
            continue
        newer: list[tuple[int, Any]] = []
        for child, _ in children:
            if child is None:
                continue
            seq = _sequence_nr(child)
            if seq == target:
                return True, False
            if seq >= MAX_SEQ or seq < target or id(child) in seen:
                continue
            seen.add(id(child))
            newer.append((seq, child))
        newer.sort(key=lambda item: item[0], reverse=True)
        stack.extend(child for _, child in newer)  # the oldest is popped first
        if len(seen) >= BFS_CAP:
            return False, True
    return False, False


def _reaches(
    root: Any, target: int, count: bool = True, cap: int = BFS_CAP
) -> tuple[bool, int, bool]:
    """Whether ``root``'s graph contains the node numbered ``target``; the nodes added.

    Nodes older than ``target`` are pruned (a node's inputs are always older than the
    node, so they cannot lead to it) and the old graph below ``target`` is all older: the
    nodes visited are exactly the ones added since, i.e. the growth of this step. Without
    ``count`` the search stops at ``target`` (the count returned is then a lower bound).
    At most ``cap`` nodes are visited (the third value: whether the cap was reached).
    """
    queue = [root]
    seen = {id(root)}
    found = False
    index = 0
    while index < len(queue):
        node = queue[index]
        index += 1
        try:
            children = node.next_functions
        except Exception:
            continue
        for child, _ in children:
            if child is None:
                continue
            # ``_sequence_nr`` inlined: this loop runs for every node of a new graph
            try:
                seq = child._sequence_nr()
            except AttributeError:
                raise _NoSequenceNumbers from None
            if seq == target:
                found = True
                if not count:
                    return True, len(queue), False
                continue
            if seq >= MAX_SEQ or seq < target:
                continue
            cid = id(child)
            if cid in seen:
                continue
            seen.add(cid)
            queue.append(child)
            if len(queue) >= cap:
                return found, len(queue), True
    return found, len(queue), False


def _count(root: Any) -> tuple[int, bool]:
    """Non-leaf nodes of one graph, bounded at ``BFS_CAP``: (count, capped)."""
    queue = [root]
    seen = {id(root)}
    index = 0
    while index < len(queue):
        node = queue[index]
        index += 1
        try:
            children = node.next_functions
        except Exception:
            continue
        for child, _ in children:
            if child is None or id(child) in seen:
                continue
            try:
                if child._sequence_nr() >= MAX_SEQ:  # ``_sequence_nr`` inlined (hot loop)
                    continue
            except AttributeError:
                raise _NoSequenceNumbers from None
            seen.add(id(child))
            queue.append(child)
            if len(queue) >= BFS_CAP:
                return len(queue), True
    return len(queue), False


def holds_at(container: Any, index: int, key: Any, previous: Any) -> bool:
    """Whether ``container`` still holds ``previous`` where it was last step (by identity)."""
    try:
        if isinstance(container, dict):
            if key is not None:
                return first_tensor(container.get(key)) is previous
            return True  # the previous last value is alive; keys unknown
        return first_tensor(container[index]) is previous
    except Exception:
        return False
