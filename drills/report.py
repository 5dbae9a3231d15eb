"""The drills' figures as plain-text tables, printed at the end of the run and written to
``$RUN_DIR/figures.md`` so they can be pasted into a note."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

COUNT_HEADERS = ("figure", "expected", "dissemination", "outcomes", "metrics", "notifications")
EVENT_HEADERS = ("events from", "emitted", "delivered", "pending", "dead", "applied by subscribers")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, its columns padded so that it reads as well in a terminal."""
    cells = [list(headers), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


@dataclass
class Section:
    title: str
    fault: list[tuple[str, str]] = field(default_factory=list)
    counts: list[tuple[str, ...]] = field(default_factory=list)
    events: list[tuple[str, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"### {self.title}", "", table(("fault figure", "value"), self.fault)]
        if self.counts:
            parts += ["", table(COUNT_HEADERS, self.counts)]
        if self.events:
            parts += ["", table(EVENT_HEADERS, self.events)]
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            parts += ["", "Problems:", *[f"- {p}" for p in shown], *([f"- ... and {more} more"] if more else [])]
        elif self.counts:
            parts += ["", "Nothing lost, nothing doubled."]
        return "\n".join(parts)


@dataclass
class Report:
    path: Path | None = None
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> None:
        self.sections.append(section)
        if self.path:
            self.path.write_text(self.render() + "\n")

    def render(self) -> str:
        return "\n\n".join(section.render() for section in self.sections)
