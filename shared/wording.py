"""E-mails written once and sent as both plain text and HTML. Times in them are in UK local time
with the zone named ("1 December 2026 at 2:30pm GMT"; ``shared.local_time``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import Markup

# --- e-mails -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A link on a line of its own: the label, then the address."""

    label: str
    url: str


@dataclass
class EmailBody:
    """One e-mail's content, written once: paragraphs, facts (label: value rows) and links, in
    order. ``text()`` and ``html()`` give the two parts of the same message."""

    blocks: list[str | Link | dict[str, str]] = field(default_factory=list)

    def paragraph(self, words: str) -> EmailBody:
        self.blocks.append(words)
        return self

    def facts(self, rows: dict[str, str]) -> EmailBody:
        self.blocks.append(dict(rows))
        return self

    def link(self, label: str, url: str) -> EmailBody:
        self.blocks.append(Link(label, url))
        return self

    def text(self) -> str:
        parts = []
        for block in self.blocks:
            if isinstance(block, Link):
                parts.append(f"{block.label}:\n{block.url}")
            elif isinstance(block, dict):
                parts.append("\n".join(f"{label}: {value}" for label, value in block.items()))
            else:
                parts.append(block)
        return "\n\n".join(parts) + "\n"

    def html(self) -> str:
        parts = []
        for block in self.blocks:
            if isinstance(block, Link):
                parts.append(Markup('<p><a href="{}">{}</a></p>').format(block.url, block.label))
            elif isinstance(block, dict):
                row = Markup('<tr><th scope="row" style="text-align:left;padding-right:1em">{}</th><td>{}</td></tr>')
                rows = Markup("").join(row.format(label, value) for label, value in block.items())
                parts.append(Markup("<table>{}</table>").format(rows))
            else:
                parts.append(Markup("<p>{}</p>").format(block))
        body = Markup("\n").join(parts)
        return str(
            Markup(
                '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head>\n'
                '<body style="font-family:Arial,sans-serif;font-size:16px;line-height:1.4;color:#0b0c0c">\n'
                "{}\n</body></html>\n"
            ).format(body)
        )
