"""The dashboard's widgets: each shows one panel and only styles what ``tui.view`` decided."""

from __future__ import annotations

from .cursor_bar import CursorBar
from .findings import FindingDetail, FindingsList
from .header import RunHeader
from .holders import HoldersPanel
from .log import LogPane
from .ranks import RanksPanel
from .timeline import Timeline

__all__ = [
    "CursorBar",
    "FindingDetail",
    "FindingsList",
    "HoldersPanel",
    "LogPane",
    "RanksPanel",
    "RunHeader",
    "Timeline",
]
