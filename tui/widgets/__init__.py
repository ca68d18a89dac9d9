"""The dashboard's widgets: each shows one panel and only styles what ``tui.view`` decided."""

from __future__ import annotations

from tui.widgets.cursor_bar import CursorBar
from tui.widgets.findings import FindingDetail, FindingsList
from tui.widgets.header import RunHeader
from tui.widgets.holders import HoldersPanel
from tui.widgets.log import LogPane
from tui.widgets.timeline import Timeline

__all__ = [
    "CursorBar",
    "FindingDetail",
    "FindingsList",
    "HoldersPanel",
    "LogPane",
    "RunHeader",
    "Timeline",
]
