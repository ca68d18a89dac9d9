"""The findings list (most severe first) and the detail pane of the highlighted finding."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from memwatch.records import Finding

from ..view import SEVERITY_BADGE, Excerpt, evidence_rows, finding_facts, finding_summary

SEVERITY_STYLE = {"error": "$text-error", "warning": "$text-warning", "info": "$text-accent"}


def finding_prompt(finding: Finding) -> str:
    """One line: a coloured severity letter, the title and the first step."""
    style = SEVERITY_STYLE.get(finding.severity, "$text-muted")
    badge = SEVERITY_BADGE.get(finding.severity, "?")
    step = f" [$text-muted]@{finding.first_step:,}[/]" if finding.first_step is not None else ""
    return f"[{style} b]{badge}[/] {escape(finding.title)}{step}"


class FindingsList(OptionList):
    """Findings in the order every view uses (``sort_findings``); Enter jumps to the step."""

    DEFAULT_CSS = """
    FindingsList {
        height: 1fr; border: round $foreground 30%; border-title-color: $text-accent;
        text-wrap: nowrap; text-overflow: ellipsis;
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
            self.add_option(Option("[$text-muted]no problems found (so far)[/]", disabled=True))
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


def detail_markup(finding: Finding, excerpt: Excerpt | None) -> str:
    """The detail pane, most useful first (80x24 shows about eight lines before scrolling):
    title, kind and step, the fix, where and how much, the source lines, what was measured.
    """
    style = SEVERITY_STYLE.get(finding.severity, "$text-muted")
    out = [f"[{style} b]{escape(finding.title)}[/]"]
    out.append(f"[$text-muted]{escape(finding_summary(finding))}[/]")
    if finding.fix:
        out.append(f"[$text-success b]fix[/]{' ' * 6}{escape(finding.fix)}")
    for label, value in finding_facts(finding):
        out.append(f"[$text-muted]{label:<8}[/] {escape(value)}")
    if excerpt is not None:
        out += ["", f"[b]source[/] [$text-muted]{escape(excerpt.path)}[/]"]
        width = len(str(excerpt.lines[-1][0])) if excerpt.lines else 1
        for number, text in excerpt.lines:
            if number == excerpt.focus:
                out.append(f"[$text-accent b]▶ {number:>{width}} │ {escape(text)}[/]")
            else:
                out.append(f"[$text-muted]  {number:>{width}} │[/] {escape(text)}")
        if excerpt.note:
            out.append(f"[$text-warning]{escape(excerpt.note)}[/]")
    if finding.detail:
        out += ["", escape(finding.detail)]
    rows = evidence_rows(finding.evidence)
    if rows:
        out += ["", "[b]evidence[/]"]
        out += [f"  [$text-muted]{escape(k)}:[/] {escape(v)}" for k, v in rows]
    return "\n".join(out)


class FindingDetail(VerticalScroll):
    """Scrollable detail of the highlighted finding (focus it with Tab to scroll)."""

    DEFAULT_CSS = """
    FindingDetail { border: round $foreground 30%; border-title-color: $text-accent; }
    FindingDetail:focus { border: round $accent; }
    FindingDetail > Static { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static(
            "[$text-muted]select a finding to see where it comes from[/]", id="detail-body"
        )

    def on_mount(self) -> None:
        self.border_title = "detail"

    def show(
        self, finding: Finding | None, excerpt: Excerpt | None, empty: str = "no finding selected"
    ) -> None:
        body = self.query_one("#detail-body", Static)
        if finding is None:
            self.border_title = "detail"
            body.update(f"[$text-muted]{escape(empty)}[/]")
            return
        self.border_title = f"detail · {finding.kind}"
        body.update(detail_markup(finding, excerpt))
        self.scroll_home(animate=False)
