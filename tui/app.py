"""The memwatch dashboard: a Textual app over one run file (``memwatch tui``, ``run --live``).

Threading: every read of the run goes through ``RunModel`` in a thread worker, and
results come back with ``call_from_thread``; the event loop only moves the cursor and
styles text, so keys stay responsive while a million-step run is being indexed. A
follow refresh runs at most every ``refresh_s`` (2 Hz by default), and never while the
previous one is still running, so a slow disk cannot pile up work.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Protocol, TypeVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, OptionList
from textual.worker import Worker, get_current_worker

from memwatch.errors import RunFileError
from memwatch.plaintext import plain
from memwatch.records import Finding, RunInfo
from memwatch.store.liveness import writer_alive

from .feed import FileFeed, RunFeed, run_files
from .logtail import read_tail
from .model import ChartData, CursorData, RunModel, Snapshot
from .ranks import Merged, load_merged, rank_numbers
from .screens import DetailScreen, ErrorScreen, HelpScreen, QuitLiveScreen
from .user_source import Excerpt, read_excerpt, search_dirs
from .view import (
    PANE_OF,
    RunState,
    Viewport,
    categories_at,
    finding_pane,
    finding_steps,
    grow,
    initial_viewport,
    jump,
    move_cursor,
    pan,
    run_state,
    step_count,
    stride,
    whole_run,
    zoom,
)
from .widgets import (
    CursorBar,
    FindingDetail,
    FindingsList,
    HoldersPanel,
    LogPane,
    RanksPanel,
    RunHeader,
    Timeline,
)

T = TypeVar("T")


def _clocks() -> tuple[float, float]:
    """Wall and this thread's CPU time: CPU time is the dashboard's own cost, unaffected by
    other processes competing for the machine."""
    return time.perf_counter(), time.thread_time()


def _since(started: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return wall - started[0], cpu - started[1]


@dataclass(frozen=True, slots=True)
class Update:
    """What one read of the run produced, applied to the screen in one step."""

    snapshot: Snapshot
    basis: Viewport | None  # the window as it was when the read began
    viewport: Viewport | None
    chart: ChartData | None
    cursor: CursorData | None
    log: str | None
    read_s: tuple[float, float]  # (wall, CPU) seconds the worker spent


class LiveChild(Protocol):
    """The training process of ``memwatch run --live`` (a ``subprocess.Popen`` fits)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class MemwatchApp(App[str | None]):
    """Shows one run; follows it while it records when ``follow`` is set.

    Args:
        source: an open run (``FileFeed``, or ``FakeFeed`` in tests); or None with
            ``path`` set, to open the file in a worker (errors show on an error screen).
        follow: poll for new steps while the writer is alive.
        clock: wall-clock time for the elapsed time of live runs (fixed in snapshots).
        alive: whether the writer still runs (``memwatch.store.liveness.writer_alive``).
        ranks: the rank files of a run directory: the findings list merges every rank's
            findings and the cross-rank ones; ``r`` switches the timeline between ranks.
        log_path / child: the script's output and process, for ``memwatch run --live``.
        search_dirs: where to look for source files named by relative locations.

    The app's result is None, or ``"leave"``/``"stop"`` when the user quit a live run
    whose training process still runs.
    """

    CSS_PATH = "memwatch.tcss"
    TITLE = "memwatch"
    HORIZONTAL_BREAKPOINTS = [  # noqa: RUF012 - Textual declares it as a plain list
        (0, "-narrow"),
        (120, "-wide"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_dashboard", "Quit"),
        Binding("ctrl+q", "quit_dashboard", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("left", "cursor(-1)", "Step", key_display="←→", priority=True),
        Binding("right", "cursor(1)", "Step", show=False, priority=True),
        Binding("shift+left", "cursor(-10)", show=False, priority=True),
        Binding("shift+right", "cursor(10)", show=False, priority=True),
        Binding("home", "first_step", show=False, priority=True),
        Binding("end", "last_step", show=False, priority=True),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom", key_display="+-"),
        Binding("minus", "zoom(2)", "Zoom out", show=False),
        Binding("0", "whole_run", "Whole", show=False),
        Binding("left_square_bracket", "pan(-0.5)", show=False),
        Binding("right_square_bracket", "pan(0.5)", show=False),
        Binding("f", "follow", "Follow"),
        Binding("r", "next_rank", "Rank"),
        Binding("l", "toggle_log", "Output"),
        Binding("d", "detail_full", "Detail"),
        Binding("t", "toggle_dark", "Light/dark", show=False),
        *(Binding(str(n), f"toggle_series({n})", show=False) for n in range(1, 8)),
    ]

    def __init__(
        self,
        source: RunFeed | None = None,
        *,
        path: Path | None = None,
        follow: bool = False,
        clock: Callable[[], float] = time.time,
        alive: Callable[[RunInfo], bool | None] = writer_alive,
        refresh_s: float = 0.5,
        ranks: Sequence[Path] = (),
        log_path: Path | None = None,
        child: LiveChild | None = None,
        search_dirs: Sequence[Path] = (),
    ) -> None:
        super().__init__()
        if source is None and path is None:
            raise ValueError("give a source or a path")
        self._source = source
        self.path = path
        self.follow_run = follow
        self.clock = clock
        self._alive = alive
        self.refresh_s = refresh_s
        self.ranks = list(ranks)
        self.log_path = log_path
        self.child = child
        self.search_dirs = list(search_dirs)
        self.model: RunModel | None = None
        self.snapshot: Snapshot | None = None
        self.viewport: Viewport | None = None
        self.chart: ChartData | None = None
        self.cursor_data: CursorData | None = None
        self.error: str | None = None
        self.refresh_timer: Timer | None = None
        #: ``(worker read, UI apply)`` of the last update as (wall, CPU) seconds: benchmark.
        self.refresh_timings: tuple[tuple[float, float], tuple[float, float]] = (
            (0.0, 0.0),
            (0.0, 0.0),
        )
        #: (wall, CPU) seconds the load worker spent building the min/max index.
        self.index_timings = (0.0, 0.0)
        self.refresh_count = 0
        self._refreshing = False
        self._log_tail = ""
        #: Every rank's findings and the cross-rank ones (run directories), else None.
        self.merged: tuple[Finding, ...] | None = None
        #: A step to put the cursor on once the rank being loaded is shown.
        self._pending_jump: int | None = None

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield Timeline(id="timeline")
        yield CursorBar(id="cursor-bar")
        with Horizontal(id="lower"):
            with Vertical(id="left"):
                if len(self.ranks) > 1:
                    yield RanksPanel(id="ranks")
                yield FindingsList(id="findings")
                yield HoldersPanel(id="holders")
            yield FindingDetail(id="detail")
        if self.log_path is not None:
            yield LogPane(self.log_path, id="log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._timeline = self.query_one(Timeline)
        self.query_one(FindingsList).focus()
        self._start_loading()
        if len(self.ranks) > 1:
            self._load_merged()
        self.set_interval(1.0, self._tick_clock)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide keys that do nothing here (rank without ranks, output without a log)."""
        if action == "next_rank":
            return len(self.ranks) > 1
        if action == "toggle_log":
            return self.log_path is not None
        if action == "follow":
            return self.snapshot is not None and self._state().state == "live"
        return True

    def _post(self, callback: Callable[..., T], *args: object) -> T | None:
        """``call_from_thread`` that gives up quietly once the app has stopped.

        A worker may still be finishing a read when the user quits; its result is dropped.
        """
        try:
            return self.call_from_thread(callback, *args)
        except RuntimeError:
            return None

    def on_unmount(self) -> None:
        self.workers.cancel_all()
        if self.model is not None:
            self.model.close()

    # -- loading ---------------------------------------------------------------------------
    def _start_loading(self) -> None:
        self.run_worker(self._load, thread=True, group="load", exclusive=True)

    def _load(self) -> None:
        """Open, show a first picture fast, then build the min/max index and redraw exactly."""
        worker = get_current_worker()
        try:
            if self.model is None:
                source = self._source if self._source is not None else FileFeed(self._path())
                self.model = RunModel(source, alive=self._alive)
            model = self.model
            started = _clocks()
            snapshot = model.refresh(force=True)
            if snapshot is None or worker.is_cancelled:
                return
            update = self._read(model, snapshot, None, started)
            if worker.is_cancelled:
                return
            self._post(self._apply_update, update)
            indexing = _clocks()
            while not model.index_more():
                if worker.is_cancelled:
                    return
            self.index_timings = _since(indexing)
            if not worker.is_cancelled:
                self._post(self._index_ready)
        except RunFileError as exc:
            if not worker.is_cancelled:
                self._post(self._fail, str(exc))

    def _path(self) -> Path:
        assert self.path is not None
        return self.path

    def _fail(self, message: str) -> None:
        """The run cannot be read: say so in one line; quitting exits with status 2."""
        self.error = message
        if self.refresh_timer is not None:
            self.refresh_timer.stop()
        self.push_screen(ErrorScreen(message))

    def _index_ready(self) -> None:
        if self.snapshot is not None:
            self.snapshot = replace(self.snapshot, indexed=True)
        if self.chart is None or not self.chart.exact:
            self._request_chart()
        if self.follow_run and self.refresh_timer is None and self._state().state == "live":
            self.refresh_timer = self.set_interval(self.refresh_s, self._tick_refresh)

    def _load_merged(self) -> None:
        """Read every rank of the run directory and judge them together (a worker)."""
        directory = self.ranks[0].parent

        def work() -> None:
            try:
                merged = load_merged(directory)
            except RunFileError as exc:
                self._post(self.query_one(RanksPanel).show, (), (), str(exc))
                return
            self._post(self._apply_merged, merged)

        self.run_worker(work, thread=True, group="merged", exclusive=True)

    def _apply_merged(self, merged: Merged) -> None:
        self.merged = merged.findings
        self.query_one(RanksPanel).show(merged.table, merged.compact)
        self.query_one(FindingsList).show(merged.findings)
        if merged.findings:
            title = self.query_one(FindingsList).border_title
            self.query_one(FindingsList).border_title = f"{title} · all ranks"

    # -- reading in workers, applying on the UI thread ---------------------------------------
    def _next_viewport(self, basis: Viewport | None, snapshot: Snapshot) -> Viewport | None:
        """The window after ``snapshot``: the whole run at first, then grown (pure)."""
        if snapshot.first is None or snapshot.last is None:
            return basis
        if basis is None:
            live = self.follow_run and snapshot.info.ended_at is None
            return initial_viewport(snapshot.first, snapshot.last, live)
        return grow(basis, snapshot.first, snapshot.last)

    def _read(
        self, model: RunModel, snapshot: Snapshot, log: str | None, started: tuple[float, float]
    ) -> Update:
        """Everything the UI needs after ``snapshot``, read in one go (worker thread).

        The window is computed from the viewport as it was when the read began
        (``basis``); if the user moved meanwhile, ``_apply_update`` re-reads instead.
        """
        basis = self.viewport
        vp = self._next_viewport(basis, snapshot)
        chart = cursor = None
        if vp is not None:
            chart = model.chart(vp.lo, vp.hi, self._timeline.buckets)
            cursor = model.cursor(vp.cursor)
        return Update(snapshot, basis, vp, chart, cursor, log, _since(started))

    def _apply_update(self, update: Update) -> None:
        started = _clocks()
        self.snapshot = update.snapshot
        if self.viewport is not update.basis:
            # The user moved the window while the worker read: keep theirs, grown.
            self.viewport = self._next_viewport(self.viewport, update.snapshot)
            self._request_chart()
            self._request_cursor()
        else:
            self.viewport = update.viewport
            if update.chart is not None:
                self.chart = update.chart
                self._timeline.show(update.chart, self.viewport.cursor if self.viewport else None)
                self._highlight()
            if update.cursor is not None:
                self._apply_cursor(update.cursor)
        if self.viewport is None:
            self._timeline.message = "no steps recorded yet"
            self._timeline.show(None, None)
            self.query_one(HoldersPanel).show(None, ())
        findings = self.merged if self.merged is not None else update.snapshot.findings
        self.query_one(FindingsList).show(findings)
        if not findings:
            self.query_one(FindingDetail).show(None, None, "memwatch found no problems (so far)")
        if update.basis is None and self._pending_jump is not None and self.viewport is not None:
            step, self._pending_jump = self._pending_jump, None
            self._set_viewport(jump(self.viewport, step))
        self._show_header()
        self._show_cursor_bar()
        if update.log is not None:
            self._apply_log(update.log)
        if update.basis is None:
            self.refresh_bindings()  # follow, rank and output keys depend on the run
        self.refresh_timings = (update.read_s, _since(started))
        self.refresh_count += 1

    def _deliver_chart(self, worker: Worker[None], data: ChartData) -> None:
        if not worker.is_cancelled:
            self._post(self._apply_chart, data)

    def _apply_chart(self, data: ChartData) -> None:
        self.chart = data
        vp = self.viewport
        self._timeline.show(data, vp.cursor if vp else None)
        self._show_cursor_bar()
        self._highlight()

    def _highlight(self) -> None:
        """Mark the selected finding's pane and steps on the timeline (its own rank only)."""
        finding = self.query_one(FindingsList).selected_finding
        if finding is None or self.chart is None or not self._on_shown_rank(finding):
            self._timeline.highlight(None, ())
            return
        shown = {PANE_OF[c] for c in self.chart.columns}
        self._timeline.highlight(finding_pane(finding, sorted(shown)), finding_steps(finding))

    def _shown_rank(self) -> int | None:
        if len(self.ranks) > 1 and self.path in self.ranks:
            return rank_numbers(self.ranks)[self.ranks.index(self.path)]
        return None

    def _on_shown_rank(self, finding: Finding) -> bool:
        shown = self._shown_rank()
        return shown is None or finding.rank is None or finding.rank == shown

    def _apply_cursor(self, data: CursorData) -> None:
        self.cursor_data = data
        self._show_cursor_bar()
        self.query_one(HoldersPanel).show(data.step, data.holders)

    def _state(self) -> RunState:
        assert self.snapshot is not None
        snap = self.snapshot
        return run_state(snap.info, snap.alive, self.clock(), snap.last_seen)

    def _show_header(self) -> None:
        if self.snapshot is None or self.model is None:
            return
        extra = []
        if self.viewport is not None and self.viewport.follow and self._state().state == "live":
            extra.append("following")
        rank = self._shown_rank()
        if rank is not None:
            extra.append(f"timeline: rank {rank} of {len(self.ranks)} (r)")
        self.query_one(RunHeader).show(
            self.snapshot.info,
            self._state(),
            step_count(self.snapshot.first, self.snapshot.last),
            self.model.source.label,
            " · ".join(extra),
        )

    def _show_cursor_bar(self) -> None:
        record = self.cursor_data.record if self.cursor_data is not None else None
        # Until the worker for a new cursor step answers, the previous values stay, dimmed.
        stale = (
            self.cursor_data is not None
            and self.viewport is not None
            and self.cursor_data.step != self.viewport.cursor
        )
        columns = self.chart.columns if self.chart is not None else ()
        held = None
        if self.chart is not None and self.viewport is not None:
            held = categories_at(self.chart.categories, self.viewport.cursor)
        self.query_one(CursorBar).show(
            self.viewport, record, columns, self._timeline.hidden, stale=stale, categories=held
        )

    def _tick_clock(self) -> None:
        """Once a second, a live run's header shows how long it has run. The timer may fire
        while the app closes and its widgets go: then there is nothing left to show."""
        if self.snapshot is None or self._state().state != "live":
            return
        try:
            self._show_header()
        except NoMatches:
            pass

    # -- follow ----------------------------------------------------------------------------
    def _tick_refresh(self) -> None:
        if not self._refreshing and self.model is not None:
            self._refreshing = True
            self.run_worker(self._refresh_run, thread=True, group="refresh")

    def _refresh_run(self) -> None:
        """One follow refresh: new steps, index tail, window, cursor values, log tail."""
        worker = get_current_worker()
        model = self.model
        try:
            if model is None:
                return
            started = _clocks()
            log = None
            if self.log_path is not None:
                tail = read_tail(self.log_path)
                log, self._log_tail = (tail if tail != self._log_tail else None), tail
            snapshot = model.refresh()
            if snapshot is None:
                if log is not None:
                    self._post(self._apply_log, log)
                return
            while not model.index_more():
                if worker.is_cancelled:
                    return
            update = self._read(model, snapshot, log, started)
            if worker.is_cancelled:
                return
            self._post(self._apply_update, update)
            if snapshot.info.ended_at is not None or snapshot.alive is False:
                self._post(self._run_ended)
        except RunFileError as exc:
            self._post(self._refresh_failed, str(exc))
        finally:
            self._refreshing = False

    def _apply_log(self, tail: str) -> None:
        self.query_one(LogPane).show(tail)

    def _run_ended(self) -> None:
        if self.refresh_timer is not None:
            self.refresh_timer.stop()
            self.refresh_timer = None
        if self.viewport is not None:
            self.viewport = replace(self.viewport, follow=False)
        self._show_header()
        self.refresh_bindings()
        state = self._state()
        self.notify(f"the run {state.text.split(' ', 1)[1]}", title="run ended")

    def _refresh_failed(self, message: str) -> None:
        if self.refresh_timer is not None:
            self.refresh_timer.stop()
            self.refresh_timer = None
        self.notify(message, title="stopped following", severity="error", timeout=30)

    # -- requests from the UI --------------------------------------------------------------
    def _request_chart(self) -> None:
        vp, model = self.viewport, self.model
        if vp is None or model is None:
            return
        lo, hi, buckets = vp.lo, vp.hi, self._timeline.buckets

        def work() -> None:
            worker = get_current_worker()
            try:
                self._deliver_chart(worker, model.chart(lo, hi, buckets))
            except RunFileError as exc:
                self._post(self._refresh_failed, str(exc))

        self.run_worker(work, thread=True, group="chart", exclusive=True)

    def _request_cursor(self) -> None:
        vp, model = self.viewport, self.model
        if vp is None or model is None:
            return
        step = vp.cursor

        def work() -> None:
            worker = get_current_worker()
            try:
                data = model.cursor(step)
            except RunFileError as exc:
                self._post(self._refresh_failed, str(exc))
                return
            if not worker.is_cancelled:
                self._post(self._apply_cursor, data)

        self.run_worker(work, thread=True, group="cursor", exclusive=True)

    def _set_viewport(self, vp: Viewport) -> None:
        before = self.viewport
        if before is None or vp == before:
            return
        self.viewport = vp
        if (vp.lo, vp.hi) != (before.lo, before.hi):
            self._request_chart()
        else:
            self.query_one(Timeline).move_cursor(vp.cursor)
        if vp.cursor != before.cursor:
            self._request_cursor()
        self._show_cursor_bar()
        if vp.follow != before.follow:
            self._show_header()

    @on(Timeline.Resized)
    def _timeline_resized(self) -> None:
        self._request_chart()

    # -- actions ---------------------------------------------------------------------------
    def action_cursor(self, columns: int) -> None:
        if self.viewport is not None:
            buckets = self.query_one(Timeline).buckets
            self._set_viewport(move_cursor(self.viewport, columns * stride(self.viewport, buckets)))

    def action_first_step(self) -> None:
        if self.viewport is not None:
            self._set_viewport(jump(self.viewport, self.viewport.first))

    def action_last_step(self) -> None:
        if self.viewport is not None:
            live = self.snapshot is not None and self._state().state == "live"
            self._set_viewport(jump(self.viewport, self.viewport.last, follow=live))

    def action_follow(self) -> None:
        if self.viewport is None or self.snapshot is None:
            return
        if self.viewport.follow:
            self._set_viewport(replace(self.viewport, follow=False))
        elif self._state().state == "live":
            self.action_last_step()
        else:
            self.notify("the run is not recording any more; nothing to follow")

    def action_zoom(self, factor: float) -> None:
        if self.viewport is not None:
            self._set_viewport(zoom(self.viewport, factor))

    def action_pan(self, fraction: float) -> None:
        if self.viewport is not None:
            self._set_viewport(pan(self.viewport, round(self.viewport.span * fraction)))

    def action_whole_run(self) -> None:
        if self.viewport is not None:
            self._set_viewport(whole_run(self.viewport))

    def action_toggle_series(self, number: int) -> None:
        """Show or hide the series numbered ``number`` in the legend (its pane's y axis
        refits; a pane whose series are all hidden gives its rows to the others)."""
        columns = self.chart.columns if self.chart is not None else ()
        if 1 <= number <= len(columns):
            self._timeline.hidden ^= {columns[number - 1]}
            self._timeline.refresh()
            self._show_cursor_bar()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_detail_full(self) -> None:
        """The highlighted finding's detail over the whole screen."""
        finding, excerpt = self.query_one(FindingDetail).shown
        if finding is not None:
            self.push_screen(DetailScreen(finding, excerpt))

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"
        self.query_one(Timeline).refresh()
        self._show_cursor_bar()

    def action_toggle_log(self) -> None:
        if self.log_path is not None:
            self.screen.toggle_class("-log")
            if self.screen.has_class("-log"):
                self.query_one(LogPane).show(read_tail(self.log_path))

    def action_next_rank(self) -> None:
        if len(self.ranks) < 2:
            return
        current = self.ranks.index(self.path) if self.path in self.ranks else -1
        self._show_rank_file(self.ranks[(current + 1) % len(self.ranks)])

    def _show_rank_file(self, path: Path) -> None:
        """Load another rank's file into the timeline, cursor and holders."""
        self.path = path
        for group in ("load", "refresh", "chart", "cursor"):
            self.workers.cancel_group(self, group)
        if self.refresh_timer is not None:
            self.refresh_timer.stop()
            self.refresh_timer = None
        old = self.model
        self.model, self._source = None, None
        self.snapshot = self.viewport = self.chart = self.cursor_data = None
        if old is not None:
            self.run_worker(old.close, thread=True, group="close")
        self.query_one(Timeline).show(None, None)
        self._start_loading()

    def action_quit_dashboard(self) -> None:
        """Quit; while a live run's training still runs, ask what to do with it first."""
        if self.child is not None and self.child.poll() is None:

            def decided(choice: str | None) -> None:
                if choice is not None:
                    self.exit(choice)

            label = self.model.source.label if self.model is not None else str(self.path)
            self.push_screen(QuitLiveScreen(self.child.pid, label), decided)
            return
        self.exit(None, return_code=2 if self.error else 0)

    # -- findings ----------------------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#findings")
    def _finding_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        finding = self.query_one(FindingsList).selected_finding
        if finding is None:
            self.query_one(FindingDetail).show(None, None)
            return
        self._request_detail(finding)

    @on(OptionList.OptionSelected, "#findings")
    def _finding_selected(self, event: OptionList.OptionSelected) -> None:
        finding = self.query_one(FindingsList).selected_finding
        if finding is None:
            return
        if not self._on_shown_rank(finding):
            # Another rank's finding: show that rank's timeline, then go to its step.
            numbers = rank_numbers(self.ranks)
            if finding.rank in numbers:
                self._pending_jump = finding.first_step
                self._show_rank_file(self.ranks[numbers.index(finding.rank)])
            return
        if finding.first_step is not None and self.viewport is not None:
            self._set_viewport(jump(self.viewport, finding.first_step))

    def _request_detail(self, finding: Finding) -> None:
        self._highlight()
        info = self.snapshot.info if self.snapshot is not None else None
        label = Path(self.model.source.label) if self.model is not None else self.path
        dirs = [
            *self.search_dirs,
            *search_dirs(info.cwd if info else None, label, info.script if info else None),
        ]
        started = info.started_at if info is not None else None

        def work() -> None:
            worker = get_current_worker()
            excerpt: Excerpt | None = None
            if finding.location is not None:
                loc = finding.location
                excerpt = read_excerpt(loc.file, loc.line, dirs, recorded_at=started)
            if not worker.is_cancelled:
                self._post(self.query_one(FindingDetail).show, finding, excerpt)

        self.run_worker(work, thread=True, group="detail", exclusive=True)


def run_dashboard(path: Path, follow: bool | None = None) -> int:
    """Open the dashboard on a run file or run directory; returns the exit status.

    ``follow=None`` follows when the run has not recorded its end. A file that cannot be
    read, or holds a bad value in what is shown first (run description, findings, newest
    step), prints one ``memwatch: ...`` line on stderr and returns 2, never a traceback;
    a value that goes bad later, while following, is reported inside the dashboard.
    """
    try:
        ranks = run_files(Path(path))
        source = FileFeed(ranks[0])
        info = source.info()
        source.findings()
        last = source.bounds().last
        if last is not None:
            source.step_at(last)
            source.holders_near(last)
    except RunFileError as exc:
        print(f"memwatch: {plain(exc)}", file=sys.stderr)
        return 2
    following = info.ended_at is None if follow is None else follow
    app = MemwatchApp(
        source, path=ranks[0], follow=following, ranks=ranks if len(ranks) > 1 else ()
    )
    app.run()
    if app.error:
        print(f"memwatch: {plain(app.error)}", file=sys.stderr)
        return 2
    return app.return_code or 0
