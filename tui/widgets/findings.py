"""The findings list (most severe first) and the detail pane of the highlighted finding."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from memwatch.records import Finding

from ..user_source import Excerpt
from ..view import SEVERITY_BADGE, evidence_rows, finding_facts, finding_summary
from .text import join, styled, styled_lines

SEVERITY_STYLE = {"error": "$text-error", "warning": "$text-warning", "info": "$text-accent"}


def finding_prompt(finding: Finding) -> Content:
    """One line: a coloured severity letter, the rank (multi-rank runs), the title and the
    first step."""
    style = SEVERITY_STYLE.get(finding.severity, "$text-muted")
    badge = SEVERITY_BADGE.get(finding.severity, "?")
    rank = "[$text-accent]r$rank[/] " if finding.rank is not None else ""
    step = " [$text-muted]@$step[/]" if finding.first_step is not None else ""
    return styled(
        f"[{style} b]$badge[/] {rank}$title{step}",
        badge=badge,
        rank=finding.rank,
        title=finding.title,
        step=f"{finding.first_step:,}" if finding.first_step is not None else "",
    )


class FindingsList(OptionList):
    """Findings in the order every view uses (``sort_findings``); Enter jumps to the step."""

    DEFAULT_CSS = """
    FindingsList {
        height: 1fr; border: round $foreground 30%; border-title-color: $text-accent;
        text-wrap: nowrap; text-overflow: ellipsis; background: $background; color: $foreground;
    }
    FindingsList:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.findings: tuple[Finding, ...] | None = None  # None until the first show

    def show(self, findings: tuple[Finding, ...]) -> None:
        """Replace the list, keeping the highlighted finding (by key) when it is still there."""
        if findings == self.findings:
            return
        keep = self.selected_finding
        self.findings = findings
        self.clear_options()
        if not findings:
            self.add_option(
                Option(styled("[$text-muted]no problems found (so far)[/]"), disabled=True)
            )
            self.border_title = "findings"
            return
        self.add_options(Option(finding_prompt(f), id=f.key) for f in findings)
        errors = sum(f.severity == "error" for f in findings)
        plural = "" if errors == 1 else "s"
        self.border_title = f"findings · {len(findings)}" + (
            f" · {errors} error{plural}" if errors else ""
        )
        keys = [f.key for f in findings]
        self.highlighted = keys.index(keep.key) if keep is not None and keep.key in keys else 0

    @property
    def selected_finding(self) -> Finding | None:
        index = self.highlighted
        if index is None or not self.findings or index >= len(self.findings):
            return None
        return self.findings[index]

    def on_mount(self) -> None:
        self.border_title = "findings"


#: Width of the labels in the detail pane (``fix``, ``where``...): values line up after it.
LABEL_WIDTH = 9


def detail_content(finding: Finding, excerpt: Excerpt | None) -> Content:
    """The detail pane, most useful first (``d`` opens it full-screen at small sizes):
    title, kind and step, the fix, where and how much, the source lines, what was measured.
    Every string from the run file is plain text (see ``tui.widgets.text``).
    """
    style = SEVERITY_STYLE.get(finding.severity, "$text-muted")
    out = [styled(f"[{style} b]$title[/]", title=finding.title)]
    out.append(styled("[$text-muted]$summary[/]", summary=finding_summary(finding)))
    if finding.fix:
        out.append(
            styled_lines(
                "[$text-success b]$label[/]$fix", label="fix".ljust(LABEL_WIDTH), fix=finding.fix
            )
        )
    for label, value in finding_facts(finding):
        out.append(
            styled("[$text-muted]$label[/]$value", label=label.ljust(LABEL_WIDTH), value=value)
        )
    if excerpt is not None:
        out += [Content(""), styled("[b]source[/] [$text-muted]$path[/]", path=excerpt.path)]
        width = len(str(excerpt.lines[-1][0])) if excerpt.lines else 1
        for number, text in excerpt.lines:
            if number == excerpt.focus:
                out.append(
                    styled("[$text-accent b]▶ $n │ $text[/]", n=f"{number:>{width}}", text=text)
                )
            else:
                out.append(
                    styled("[$text-muted]  $n │[/] $text", n=f"{number:>{width}}", text=text)
                )
        if excerpt.note:
            out.append(styled("[$text-warning]$note[/]", note=excerpt.note))
    if finding.detail:
        out += [Content(""), styled_lines("$detail", detail=finding.detail)]
    rows = evidence_rows(finding.evidence)
    if rows:
        out += [Content(""), styled("[b]evidence[/]")]
        out += [styled("  [$text-muted]$key:[/] $value", key=k, value=v) for k, v in rows]
    return join(out)


class FindingDetail(VerticalScroll):
    """Scrollable detail of the highlighted finding (focus it with Tab to scroll)."""

    DEFAULT_CSS = """
    FindingDetail {
        border: round $foreground 30%; border-title-color: $text-accent;
        background: $background; color: $foreground;
    }
    FindingDetail:focus { border: round $accent; }
    FindingDetail > Static { width: 1fr; background: $background; color: $foreground; }
    """

    def compose(self) -> ComposeResult:
        yield Static(
            styled("[$text-muted]select a finding to see where it comes from[/]"),
            id="detail-body",
        )

    def on_mount(self) -> None:
        self.border_title = "detail"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: What is shown, so ``d`` can open the same detail full-screen.
        self.shown: tuple[Finding | None, Excerpt | None] = (None, None)

    def show(
        self, finding: Finding | None, excerpt: Excerpt | None, empty: str = "no finding selected"
    ) -> None:
        self.shown = (finding, excerpt)
        body = self.query_one("#detail-body", Static)
        if finding is None:
            self.border_title = "detail"
            body.update(styled("[$text-muted]$empty[/]", empty=empty))
            return
        self.border_title = styled("detail · $kind", kind=finding.kind)
        body.update(detail_content(finding, excerpt))
        self.scroll_home(animate=False)
