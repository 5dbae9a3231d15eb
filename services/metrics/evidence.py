"""The inspection evidence pack: for a period (and optionally a threat area or an organisation),
what the centre sent, to whom, whether it was acknowledged, chased and returned, what action and
results followed, how the recipients prioritised it, what they said of the intelligence, the
figures' definitions and how complete the period's data is; against the previous period of the
same length and, for one organisation, against the national figure.

One function builds the pack (``evidence_pack``); it is rendered as HTML with a print stylesheet
(``render_html``) or as a PDF (``render_pdf``, fpdf2: pure Python from PyPI, no system
libraries). The API (``GET /api/v1/metrics/evidence-pack``) and the dashboard's pages
(``/dashboard/evidence-pack`` and ``.pdf``, added to the dashboard's blueprint below) answer with
the same pack. The headline figures are the summary's (``figures.summary``) and read as the
dashboard reads them; every package and return is listed only when the reader's clearance allows
its package, and none above it is counted.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

from flask import Response, g, redirect, render_template, request, url_for
from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.metrics import figures
from services.metrics.dashboard import (
    bp,
    day_words,
    headline_cards,
    number,
    percent,
    read_filters,
    result_rows,
    sessions,
    words,
)
from services.metrics.definitions import (
    ATTRIBUTION_WORDS,
    FUNNEL_DEFINITION,
    FUNNEL_STAGES,
    GRADING_DEFINITION,
    RATES,
    RESULTS_DEFINITION,
    amount_words,
    judged_words,
    rate,
    results_words,
)
from services.metrics.models import Organisation, ReturnState
from services.metrics.projections import return_figures
from shared.audit import audit_detail, audit_outcome, audit_target
from shared.auth import Principal
from shared.db import get_session
from shared.vocabulary import (
    ACCURACIES,
    ACCURACY_CHOICES,
    ACTION_CHOICES,
    CLASSIFICATIONS,
    PRIORITY_CHOICES,
    RESULT_KINDS,
    TIMELINESS_CHOICES,
    VERDICT_LABELS,
    labels,
)
from shared.vocabulary import INTELLIGENCE_ASSESSMENT_LABELS as ASSESSMENT_LABELS
from shared.vocabulary import SOURCE_EVALUATION_LABELS as SOURCE_LABELS

TITLE = "Inspection evidence pack"
MAX_PACKAGES = 500  # listed one by one; the figures count every package of the period
ACTION_LABELS = labels(ACTION_CHOICES)
PRIORITY_LABELS = labels(PRIORITY_CHOICES)
ACCURACY_LABELS = labels(ACCURACY_CHOICES)
TIMELINESS_LABELS = labels(TIMELINESS_CHOICES)
COMPLETENESS_DEFINITION = (
    "Returns expected from the packages issued in the period, withdrawn ones not counted. Still open: "
    "no final return yet (an interim return leaves it open). Overdue: open and past its due date. "
    "Delivery failed: the package could not be delivered and the recipient has not acknowledged it since."
)
COMPARISON_DEFINITION = (
    "The previous period is the same number of whole months just before this one, with the same threat "
    "area (and organisation). Changes in rates are in percentage points."
)
NATIONAL_DEFINITION = (
    "National: every organisation's returns, for the packages of the same period and threat area, within the "
    "reader's clearance."
)


# -- building the pack ---------------------------------------------------------------------------


def counts_of(summary: dict) -> dict:
    """The facts each rate of ``definitions.RATES`` divides, from a summary."""
    return {metric: summary["funnel"][stage] for stage, metric, _ in FUNNEL_STAGES} | {"on_time": summary["on_time"]}


def period_words(start: date, end: date) -> str:
    if (start.year, start.month) == (end.year, end.month):
        return f"{start:%B %Y}"
    return f"{start:%B %Y} to {end:%B %Y}"


def highest_marking(markings) -> str | None:
    found = [m for m in markings if m]
    return max(
        found, key=lambda m: CLASSIFICATIONS.index(m) if m in CLASSIFICATIONS else len(CLASSIFICATIONS), default=None
    )


def signed(value: float, words_of) -> str:
    """'+3', '−£1,200', 'no change'."""
    if not value:
        return "no change"
    return ("+" if value > 0 else "−") + words_of(abs(value))


def points(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "—"
    change = round((now - before) * 100)
    return "no change" if not change else f"{'+' if change > 0 else '−'}{abs(change)} points"


def comparison_rows(now: dict, before: dict) -> list[dict]:
    """The period's figures next to another's (the previous period, or the national figure)."""
    rows = [
        {
            "label": "Packages issued",
            "now": number(now["packages_issued"]),
            "before": number(before["packages_issued"]),
            "change": signed(now["packages_issued"] - before["packages_issued"], number),
        }
    ]
    for stage, label in (("recipients", "Returns expected"), ("final", "Final returns filed")):
        rows.append(
            {
                "label": label,
                "now": number(now["funnel"][stage]),
                "before": number(before["funnel"][stage]),
                "change": signed(now["funnel"][stage] - before["funnel"][stage], number),
            }
        )
    counts_now, counts_before = counts_of(now), counts_of(before)
    for figure in RATES:
        rows.append(
            {
                "label": figure.label,
                "now": percent(figure.of(counts_now)),
                "before": percent(figure.of(counts_before)),
                "change": points(figure.of(counts_now), figure.of(counts_before)),
            }
        )
    for kind in RESULT_KINDS:
        a, b = now["results"]["totals"][kind.name], before["results"]["totals"][kind.name]
        if a or b:
            rows.append(
                {
                    "label": kind.short or kind.label.removesuffix(", in grams").removesuffix(", in pounds"),
                    "now": amount_words(kind, a),
                    "before": amount_words(kind, b),
                    "change": signed(a - b, lambda v, k=kind: amount_words(k, v)),
                }
            )
    return rows


def return_status(ret: ReturnState) -> str:
    if ret.withdrawn:
        return "Withdrawn"
    if ret.final_returned_at:
        timing = "on time" if ret.final_on_time else "late"
        return f"Final, {timing} ({day_words(ret.final_returned_at)})"
    if ret.first_returned_at:
        overdue = ", overdue" if ret.overdue else ""
        return f"Interim only ({day_words(ret.first_returned_at)}){overdue}"
    return "Open, overdue" if ret.overdue else "Open, not yet due"


def return_row(ret: ReturnState, names: dict[str, str], orgs_by_return: dict[uuid.UUID, str]) -> dict:
    outcome = ret.outcome or {}
    feedback = outcome.get("intelligence_feedback") or {}
    found = return_figures(ret)
    attribution = "onward" if ret.onward_from else outcome.get("attribution")
    results = results_words(found)
    if ret.delivered_at or ret.acknowledged_at or ret.first_returned_at:
        delivered = "Delivered"
    else:
        delivered = "Delivery failed" if ret.delivery_failed else "Not yet delivered"
    if ret.acknowledged_at:
        acknowledged = f"acknowledged {day_words(ret.acknowledged_at)}"
    else:
        acknowledged = "acknowledged by filing a return" if ret.first_returned_at else "not acknowledged"
    priority = PRIORITY_LABELS.get(outcome.get("priority") or "", "")
    if priority and outcome.get("tasking_forum"):
        priority += f", by {outcome['tasking_forum']}"
    actions = ", ".join(ACTION_LABELS.get(a, words(a)) for a in outcome.get("actions", []))
    if outcome.get("no_action_reason"):
        actions += f": {outcome['no_action_reason']}"
    if outcome.get("passed_to"):
        actions += f" (to {outcome['passed_to']})"
    quality = []
    if feedback.get("usefulness"):
        quality.append(f"usefulness {feedback['usefulness']} of 5")
    if feedback.get("accuracy"):
        quality.append(ACCURACY_LABELS.get(feedback["accuracy"], words(feedback["accuracy"])).lower())
    if feedback.get("timeliness"):
        quality.append(TIMELINESS_LABELS.get(feedback["timeliness"], words(feedback["timeliness"])).lower())
    return {
        "organisation": ret.organisation or "?",
        "name": names.get(ret.organisation or "", ret.organisation or "?"),
        "onward_from": orgs_by_return.get(ret.onward_from) if ret.onward_from else None,
        "delivered": delivered,
        "acknowledged": acknowledged,
        "chases": ret.chases_sent,
        "status": return_status(ret),
        "amended": ret.version > 1,
        "version": ret.version,
        "actions": actions.rstrip(".") or "—",
        "priority": priority or "—",
        "action_priority": f"{actions.rstrip('.') or 'No action given'}. Priority: {priority or 'not given'}"
        if outcome
        else "No return yet",
        "results": (f"{results} ({ATTRIBUTION_WORDS.get(attribution or '', 'unattributed')})" if results else "None"),
        "feedback": ", ".join(quality) or "—",
    }


def evidence_pack(
    session: Session,
    principal: Principal,
    start: date,
    end: date,
    threat_area: str | None,
    organisation: str | None,
) -> dict:
    """Everything the pack says, as words and numbers ready to print."""
    cleared = principal.allowed_classifications
    start, end = start.replace(day=1), end.replace(day=1)
    summary = figures.summary(session, start, end, threat_area, organisation, cleared)
    before_start, before_end = figures.previous_period(start, end)
    previous = figures.summary(session, before_start, before_end, threat_area, organisation, cleared)
    national = figures.summary(session, start, end, threat_area, None, cleared) if organisation else None

    query = figures.package_query(
        {
            "from_month": f"{start:%Y-%m}",
            "to_month": f"{end:%Y-%m}",
            "threat_area": threat_area,
            "organisation": organisation,
            "sort": "issued_at",
        },
        cleared,
    )
    period_packages = query.subquery()
    total_packages = session.scalar(select(func.count()).select_from(period_packages)) or 0
    # Over every package of the period, not only those listed: the marking of all the pack counts.
    marking = highest_marking(session.scalars(select(period_packages.c.classification).distinct()))
    packages = session.scalars(query.limit(MAX_PACKAGES)).all()
    returns_by_package: dict[uuid.UUID, list[ReturnState]] = {p.package_id: [] for p in packages}
    every_return = session.scalars(
        select(ReturnState).where(ReturnState.package_id.in_(list(returns_by_package)))
    ).all()
    orgs_by_return = {r.return_id: r.organisation or "?" for r in every_return}
    for ret in every_return:
        if organisation is None or ret.organisation == organisation:
            returns_by_package[ret.package_id].append(ret)  # type: ignore[index]
    names = {o.code: o.name for o in session.scalars(select(Organisation))}

    counted: Counter = Counter()  # every live return of the listed packages, as the facts count them
    by_grading: dict[str, Counter] = {}
    listed = []
    for package in packages:
        rows = sorted(
            returns_by_package[package.package_id], key=lambda r: (r.onward_from is not None, r.organisation or "")
        )
        grading = f"{package.source_evaluation}{package.intelligence_assessment}"
        if package.withdrawn_at is None:
            for ret in rows:
                found = return_figures(ret)
                counted.update(found)
                by_grading.setdefault(grading, Counter()).update(found)
        listed.append(
            {
                "reference": package.reference,
                "title": package.title,
                "threat_area": words(package.threat_area),
                "classification": package.classification,
                "grading": f"{grading}{package.handling_code}",
                "issued": day_words(package.issued_at),
                "due": day_words(package.due_at),
                "withdrawn": day_words(package.withdrawn_at) if package.withdrawn_at else None,
                "verdict": VERDICT_LABELS.get(package.verdict, words(package.verdict)),
                "verdict_reason": package.verdict_reason,
                "returns": [return_row(r, names, orgs_by_return) for r in rows],
            }
        )

    expected, final = int(counted["recipients"]), int(counted["final"])
    completeness = {
        "expected": expected,
        "final": final,
        "open": expected - final,
        "interim_only": int(counted["returned"]) - final,
        "overdue": int(counted["overdue"]),
        "failed": int(counted["failed"]),
        "unacknowledged": expected - int(counted["acknowledged"]),
        "chases": int(counted["chases_sent"]),
    }
    quality = figures.quality_of(counted)
    grading_rows = []
    for key in sorted(by_grading):
        found = by_grading[key]
        judged = int(sum(found[f"accuracy:{a}"] for a in ACCURACIES))
        confirmed = int(found["accuracy:confirmed"] + found["accuracy:partly_confirmed"])
        grading_rows.append(
            {
                "grading": key,
                "label": f"{SOURCE_LABELS.get(int(key[0]), '?') if key[0].isdigit() else '?'} source, "
                f"{ASSESSMENT_LABELS.get(key[1:], '?').lower()}",
                "judged": judged,
                "share": percent(rate(confirmed, judged)),
                "words": judged_words(confirmed, judged),
                **{a: int(found[f"accuracy:{a}"]) for a in ACCURACIES},
            }
        )

    return {
        "title": TITLE,
        "period": period_words(start, end),
        "from_month": f"{start:%Y-%m}",
        "to_month": f"{end:%Y-%m}",
        "threat_area": words(threat_area) if threat_area else "All threat areas",
        "threat_area_code": threat_area,
        "organisation": {"code": organisation, "name": names.get(organisation, organisation)} if organisation else None,
        "generated_at": datetime.now(UTC).strftime("%d %B %Y, %H:%M UTC"),
        "generated_by": f"{principal.sub} ({principal.org})",
        "clearance": principal.clearance,
        "highest_marking": marking or "none: no packages in the period",
        # What each page is marked: the highest marking in it, or OFFICIAL when it holds no package.
        "marking": marking or "OFFICIAL",
        "summary": summary,
        "headline": headline_cards(summary),
        "funnel": [
            {
                "label": label,
                "value": number(summary["funnel"][stage]),
                "share": percent(rate(summary["funnel"][stage], summary["funnel"]["recipients"])) if index else "",
            }
            for index, (stage, _, label) in enumerate(FUNNEL_STAGES)
        ],
        "results": result_rows(summary["results"]),
        "previous_period": period_words(before_start, before_end),
        "previous": comparison_rows(summary, previous),
        "national": comparison_rows(summary, national) if national else None,
        "completeness": completeness,
        "quality": {
            "mean_usefulness": "—" if quality["mean_usefulness"] is None else f"{quality['mean_usefulness']:g} of 5",
            "rated": quality["rated"],
            "accuracy": [(ACCURACY_LABELS[a], quality["accuracy"][a]) for a in ACCURACIES],
            "timeliness": [(TIMELINESS_LABELS[t], n) for t, n in quality["timeliness"].items()],
        },
        "grading": grading_rows,
        "packages": listed,
        "packages_total": total_packages,
        "packages_cut": total_packages > len(listed),
        "results_definition": RESULTS_DEFINITION,
        "grading_definition": GRADING_DEFINITION,
        "completeness_definition": COMPLETENESS_DEFINITION,
        "funnel_definition": FUNNEL_DEFINITION,
        "definitions": [
            *((card["label"], card["definition"]) for card in headline_cards(summary)[:-1]),
            ("From sending to action", FUNNEL_DEFINITION),
            ("Results", RESULTS_DEFINITION),
            ("Was the intelligence confirmed?", GRADING_DEFINITION),
            ("Data completeness", COMPLETENESS_DEFINITION),
            ("Comparisons", COMPARISON_DEFINITION),
            *((("National figure", NATIONAL_DEFINITION),) if organisation else ()),
        ],
    }


def filename(pack: dict, extension: str) -> str:
    period = (
        pack["from_month"] if pack["from_month"] == pack["to_month"] else f"{pack['from_month']}-to-{pack['to_month']}"
    )
    scope = "".join(f"-{part}" for part in (pack["threat_area_code"], (pack["organisation"] or {}).get("code")) if part)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"nclcc-evidence-pack-{period}{scope}")
    return f"{safe.lower()}.{extension}"


# -- HTML ----------------------------------------------------------------------------------------


STYLESHEETS = ("dashboard.css", "evidence.css")


@cache
def inline_style() -> tuple[str, str]:
    """The pack's stylesheets in one, and its CSP hash: the API's HTML stands alone when saved."""
    folder = Path(__file__).parent / "static" / "dashboard"
    css = "\n".join((folder / name).read_text(encoding="utf-8") for name in STYLESHEETS)
    return css, "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"


def render_html(pack: dict, on_dashboard: bool = False, pdf_url: str | None = None) -> str:
    """The dashboard's pack links its stylesheets; the API's carries them inline."""
    return render_template(
        "evidence/pack.html",
        pack=pack,
        on_dashboard=on_dashboard,
        pdf_url=pdf_url,
        inline_css=None if on_dashboard else inline_style()[0],
    )


# -- PDF -----------------------------------------------------------------------------------------

SUBSTITUTES = {"—": "-", "–": "-", "−": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "→": "->", "↓": "v"}
SUBSTITUTES |= {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Œ": "OE", "œ": "oe", "ı": "i", "€": "EUR"}


def latin(text: object) -> str:
    """Text the PDF's standard fonts can draw (Latin-1): dashes and quotes made plain, accents
    kept where Latin-1 has them, anything else spelt without its accent or as '?'."""
    value = "".join(SUBSTITUTES.get(c, c) for c in str(text))
    out = []
    for c in value:
        try:
            c.encode("latin-1")
            out.append(c)
        except UnicodeEncodeError:
            plain = unicodedata.normalize("NFKD", c).encode("latin-1", "ignore").decode("latin-1")
            out.append(plain or "?")
    return "".join(out)


class PackPdf(FPDF):
    def __init__(self, pack: dict):
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.pack = pack
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(True, margin=18)
        self.set_title(latin(f"{TITLE}: {pack['period']}"))
        self.set_author("NCLCC")
        self.set_creator("NCLCC outcomes dashboard")

    def header(self):
        self.set_font("Helvetica", "B", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, latin(self.pack["marking"]), align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)
        self.set_text_color(0, 0, 0)

    def footer(self):
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, latin(f"{TITLE}, {self.pack['period']}  |  page {self.page_no()} of {{nb}}"), align="C")
        self.set_text_color(0, 0, 0)

    def heading(self, text: str, size: int = 14):
        if self.will_page_break(40):  # a heading is never the last thing on a page
            self.add_page()
        self.set_font("Helvetica", "B", size)
        self.multi_cell(0, size * 0.5, latin(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)

    def para(self, text: str, size: float = 9.5, style: str = ""):
        self.set_font("Helvetica", style, size)
        self.multi_cell(0, size * 0.48, latin(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)

    def wrap(self, text: str, width: float) -> list[str]:
        """Break text into lines at most ``width`` wide, at spaces (a word wider than a line is cut)."""
        lines: list[str] = []
        font, points = self.current_font, self.font_size_pt
        assert font is not None, "set_font first"

        def measure(words: str) -> float:  # the standard fonts' widths, without fpdf2's text shaping
            return font.get_text_width(words, points, None)[1] / self.k

        space = measure(" ")
        for paragraph in text.split("\n"):
            current, used = "", 0.0
            for word in paragraph.split():
                size = measure(word)
                while size > width:  # a word wider than the line: cut it
                    cut = max(1, int(len(word) * width / size))
                    if current:
                        lines.append(current)
                        current, used = "", 0.0
                    lines.append(word[:cut])
                    word = word[cut:]
                    size = measure(word)
                if current and used + space + size > width:
                    lines.append(current)
                    current, used = "", 0.0
                current, used = (f"{current} {word}", used + space + size) if current else (word, size)
            lines.append(current)
        return lines

    def plain_para(self, text: str, size: float, style: str = "") -> None:
        """A paragraph drawn as plain lines (as ``plain_grid`` draws its cells)."""
        self.set_font("Helvetica", style, size)
        line = size * 0.45
        lines = self.wrap(latin(text), self.epw)
        if self.will_page_break(len(lines) * line):
            self.add_page()
        y = self.get_y()
        for index, text_line in enumerate(lines):
            self.text(self.l_margin, y + (index + 0.78) * line, text_line)
        self.set_xy(self.l_margin, y + len(lines) * line + 1.5)

    def plain_grid(self, head: list[str], rows: list[list], widths: tuple, size: float = 7.5):
        """A bordered table drawn line by line: each cell's text is broken into lines once, by the
        standard fonts' widths, and drawn as plain text (fpdf2's ``table`` shapes and breaks it
        twice), so hundreds of packages' recipients print in a few seconds. The headings repeat
        on each new page; a row never splits across pages."""
        line = size * 0.45
        pad = 1.0

        def draw(values: list, bold: bool) -> None:
            self.set_font("Helvetica", "B" if bold else "", size)
            cells = [self.wrap(latin(v), w - 2 * pad) for w, v in zip(widths, values, strict=True)]
            height = max(len(c) for c in cells) * line + 2 * pad
            if self.will_page_break(height):
                self.add_page()
                if not bold:
                    draw(head, True)
            x, y = self.l_margin, self.get_y()
            if bold:
                self.set_fill_color(232, 236, 240)
                self.rect(x, y, sum(widths), height, style="F")
            for w, lines in zip(widths, cells, strict=True):
                self.rect(x, y, w, height)
                for index, text in enumerate(lines):
                    if text:
                        self.text(x + pad, y + pad + (index + 0.78) * line, text)
                x += w
            self.set_xy(self.l_margin, y + height)

        draw(head, True)
        for values in rows:
            draw([str(v) for v in values], False)
        self.ln(3)

    def grid(self, head: list[str], rows: list[list], widths: tuple, size: float = 8.5, numbers: int = 0):
        """A table; the ``numbers`` columns after the first are right-aligned."""
        self.set_font("Helvetica", "", size)
        align = ("LEFT", *(("RIGHT",) * numbers), *(("LEFT",) * (len(widths) - 1 - numbers)))
        with self.table(
            col_widths=widths,
            headings_style=FontFace(emphasis="BOLD", fill_color=(232, 236, 240)),
            cell_fill_color=(246, 248, 250),
            cell_fill_mode=TableCellFillMode.ROWS,
            line_height=size * 0.5,
            text_align=align,
            padding=1.2,
        ) as table:
            table.row([latin(h) for h in head])
            for values in rows:
                table.row([latin(v) for v in values])
        self.ln(3)


def render_pdf(pack: dict) -> bytes:
    pdf = PackPdf(pack)
    pdf.add_page()
    pdf.heading(f"{TITLE}: {pack['period']}", 16)
    scope = pack["threat_area"] + (
        f"; organisation {pack['organisation']['name']} ({pack['organisation']['code']})"
        if pack["organisation"]
        else ""
    )
    pdf.para(f"National County Lines Coordination Centre. Period: {pack['period']}. Scope: {scope}.")
    pdf.para(
        f"Highest marking in this pack: {pack['highest_marking']}. Reader's clearance: {pack['clearance']}; "
        "only packages at or below it are listed or counted.",
        style="B",
    )
    pdf.para(f"Made {pack['generated_at']} for {pack['generated_by']}.")

    pdf.heading("1. The period's figures", 13)
    pdf.grid(
        ["Figure", "Value", "Counts"],
        [[card["label"], card["value"], card["detail"]] for card in pack["headline"]],
        (40, 22, 118),
        numbers=1,
    )
    pdf.grid(
        ["From sending to action", "Returns", "Of those sent"],
        [[row["label"], row["value"], row["share"]] for row in pack["funnel"]],
        (80, 30, 70),
        numbers=2,
    )
    pdf.heading(f"Against the previous period ({pack['previous_period']})", 11)
    pdf.grid(
        ["Figure", pack["period"], pack["previous_period"], "Change"],
        [[r["label"], r["now"], r["before"], r["change"]] for r in pack["previous"]],
        (55, 40, 45, 40),
        numbers=2,
    )
    if pack["national"]:
        pdf.heading(f"{pack['organisation']['name']} against the national figure", 11)
        pdf.grid(
            ["Figure", pack["organisation"]["code"], "National", "Difference"],
            [[r["label"], r["now"], r["before"], r["change"]] for r in pack["national"]],
            (55, 40, 45, 40),
            numbers=2,
        )

    pdf.heading("2. Data completeness", 13)
    c = pack["completeness"]
    pdf.grid(
        ["Returns", "Count"],
        [
            ["Expected", number(c["expected"])],
            ["Final return filed", number(c["final"])],
            ["Still open (no final return yet)", number(c["open"])],
            ["  of them, an interim return only", number(c["interim_only"])],
            ["  of them, overdue now", number(c["overdue"])],
            ["Delivery failed", number(c["failed"])],
            ["Not acknowledged", number(c["unacknowledged"])],
            ["Chase steps sent", number(c["chases"])],
        ],
        (120, 60),
        numbers=1,
    )
    pdf.para(COMPLETENESS_DEFINITION, 8.5)

    pdf.add_page()
    pdf.heading("3. Results", 13)
    pdf.para(RESULTS_DEFINITION, 8.5)
    pdf.grid(
        ["Result", "Total", "Direct", "Contributed", "Onward"],
        [[row["label"], row["total"], *row["by_attribution"]] for row in pack["results"]],
        (60, 30, 30, 30, 30),
        numbers=4,
    )

    pdf.heading("4. Feedback on the intelligence", 13)
    q = pack["quality"]
    pdf.para(
        f"Mean usefulness: {q['mean_usefulness']} ({q['rated']} rated). "
        + "Accuracy: "
        + ", ".join(f"{label.lower()} {n}" for label, n in q["accuracy"])
        + ". Timeliness: "
        + ", ".join(f"{label.lower()} {n}" for label, n in q["timeliness"])
        + "."
    )
    if pack["grading"]:
        pdf.grid(
            ["Grading", "Share confirmed", "Judged", "Confirmed", "Partly", "Not confirmed", "False"],
            [
                [
                    f"{r['grading']}: {r['label']}",
                    r["share"],
                    r["judged"],
                    r["confirmed"],
                    r["partly_confirmed"],
                    r["not_confirmed"],
                    r["false"],
                ]
                for r in pack["grading"]
            ],
            (58, 20, 18, 20, 18, 26, 20),
            numbers=6,
        )
    pdf.para(GRADING_DEFINITION, 8.5)

    pdf.add_page()
    pdf.heading("5. What was sent, to whom, and what followed", 13)
    if pack["packages_cut"]:
        pdf.para(f"The first {len(pack['packages'])} of {pack['packages_total']} packages, in order of issue.")
    if not pack["packages"]:
        pdf.para("No packages were issued in this period.")
    for package in pack["packages"]:
        if pdf.will_page_break(45):
            pdf.add_page()
        pdf.plain_para(f"{package['reference']}  {package['title']}", 10, "B")
        line = (
            f"{package['threat_area']}; {package['classification']}; graded {package['grading']}; issued "
            f"{package['issued']}, returns due {package['due']}. "
            f"Verdict: {package['verdict']}. {package['verdict_reason']}"
        )
        if package["withdrawn"]:
            line += f" Withdrawn {package['withdrawn']}: nothing of it is counted."
        pdf.plain_para(line, 8.5)
        if package["returns"]:
            pdf.plain_grid(
                ["To", "Delivered / acknowledged", "Chased", "Return", "Action and priority", "Results", "Feedback"],
                [
                    [
                        r["organisation"] + (f" (onward, from {r['onward_from']})" if r["onward_from"] else ""),
                        f"{r['delivered']}; {r['acknowledged']}",
                        r["chases"],
                        r["status"] + (f"; amended (version {r['version']})" if r["amended"] else ""),
                        r["action_priority"],
                        r["results"],
                        r["feedback"],
                    ]
                    for r in package["returns"]
                ],
                (20, 27, 13, 27, 37, 32, 24),
            )

    pdf.add_page()
    pdf.heading("6. How the figures are defined", 13)
    for label, definition in pack["definitions"]:
        pdf.para(label, 10, "B")
        pdf.para(definition, 9)
    return bytes(pdf.output())


# -- the dashboard's pages: a signed-in leader's pack, from the same function --------------------


def _dashboard_pack(kind: str):
    principal, reason = sessions.current()
    if principal is None:
        if reason and reason != "unavailable":
            sessions.end_current()
        audit_outcome("refused", f"refused: dashboard session {reason}" if reason else "refused: not signed in")
        return redirect(url_for("dashboard.sign_in", reason=reason) if reason else url_for("dashboard.sign_in"), 303)
    g.principal = principal
    audit_target("evidence_pack", kind)
    filters, errors = read_filters(request.args, datetime.now(UTC).date())
    organisation = (request.args.get("organisation") or "").strip().upper() or None
    if organisation and (len(organisation) > 16 or not all(c.isalnum() or c in "-_" for c in organisation)):
        errors["organisation"] = "There is no such organisation code."
    if errors:
        audit_detail("invalid: filters " + ", ".join(errors))
        return render_template("evidence/problem.html", principal=principal, errors=errors), 422
    pack = evidence_pack(get_session(), principal, filters.start, filters.end, filters.threat_area, organisation)
    if kind == "pdf":
        return pdf_response(pack)
    query = {"from": pack["from_month"], "to": pack["to_month"]}
    if filters.threat_area:
        query["threat_area"] = filters.threat_area
    if organisation:
        query["organisation"] = organisation
    return render_html(pack, on_dashboard=True, pdf_url=url_for("dashboard.evidence_pack_pdf", **query))


def pdf_response(pack: dict) -> Response:
    return Response(
        render_pdf(pack),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename(pack, "pdf")}"'},
    )


def html_response(pack: dict) -> Response:
    """The API's HTML: one file, its style inline (allowed by hash), no script of any kind."""
    return Response(
        render_html(pack),
        mimetype="text/html",
        headers={
            "Content-Disposition": f'inline; filename="{filename(pack, "html")}"',
            "Content-Security-Policy": f"default-src 'none'; style-src {inline_style()[1]}; img-src data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        },
    )


@bp.get("/evidence-pack")
def evidence_pack_page():
    return _dashboard_pack("html")


@bp.get("/evidence-pack.pdf")
def evidence_pack_pdf():
    return _dashboard_pack("pdf")
