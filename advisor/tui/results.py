"""Step 5, the results: the pick and why, the serve command to copy, the Pareto table and
chart, where the artifact and its reports are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from advisor.cli.console import shown
from advisor.report import CSV_FILE, MARKDOWN_FILE, PLOT_FILE
from advisor.tui.text import pareto_chart, serve_command, summary_lines


class ResultsStep(Vertical):
    """Tabs: summary (pick, serve command, files), candidates (Pareto table), chart."""

    def compose(self) -> ComposeResult:
        yield Static("[b]5. Results[/b]  [dim]←/→ tabs, c: copy the serve command, "
                     "ctrl+b: back, ctrl+q: quit[/dim]", classes="intro")
        with TabbedContent(id="results-tabs"):
            with TabPane("Summary", id="tab-summary"):
                with VerticalScroll():
                    yield Static("", id="res-summary")
                    yield Static("", id="res-serve")
                    yield Static("", id="res-files")
            with TabPane("Candidates", id="tab-candidates"):
                table: DataTable[str] = DataTable(id="res-table", cursor_type="row",
                                                  zebra_stripes=True)
                table.add_columns("", "label", "kind", "size MB", "mean KL", "p95", "memory",
                                  "meets", "Pareto")
                yield table
            with TabPane("Chart", id="tab-chart"):
                yield Static("", id="res-chart")

    def show(self, rep: dict[str, Any], out: Path) -> None:
        where = str(out)
        self.query_one("#res-summary", Static).update("\n".join(summary_lines(rep, where)))
        self.query_one("#res-serve", Static).update(
            f"\n[b]serve[/b]  [reverse] {shown(serve_command(rep, where))} [/reverse]")
        files = [("artifact", where), ("report", str(out / MARKDOWN_FILE)),
                 ("report.json", str(out / "report.json")), ("plot", str(out / PLOT_FILE)),
                 ("candidates", str(out / CSV_FILE))]
        self.query_one("#res-files", Static).update(
            "\n" + "\n".join(f"{k:<12} {shown(v)}" for k, v in files))
        table = self.query_one("#res-table", DataTable)
        table.clear()
        front = set(rep.get("pareto_front", []))
        for c in sorted(rep["candidates"], key=lambda c: (c["size_measured"], c["kl_measured"])):
            table.add_row(
                "▶" if c["label"] == rep["pick"]["label"] else "", shown(c["label"]), c["kind"],
                f"{c['size_measured'] / 1e6:.2f}", f"{c['kl_measured']:.4f}",
                f"{c['p95']['value'] * 1e3:.0f} ms {c['p95']['origin'][:4]}.",
                f"{c['memory']['value'] / 1e6:.0f} MB {c['memory']['origin'][:4]}.",
                "yes" if not c["violations"] else "no", "*" if c["label"] in front else "")
        self.query_one("#res-chart", Static).update(
            "size (measured) vs mean KL (measured); @ pick, * Pareto front, o other\n\n"
            + "\n".join(pareto_chart(rep)))
