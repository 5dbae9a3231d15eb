"""The headline figures, each defined once: what it counts, the words that define it, and how a
person reads its value.

The metrics API, the dashboard and the CSV export all take their figures from here, so a figure
shown in two places is the same figure. The facts these read are kept by ``projections.py``:
``recipients`` (returns expected, withdrawn ones not counted), ``acknowledged`` (acknowledged, or
a return filed: filing counts as acknowledgement), ``final``, ``on_time``, ``final_actioned``
(final returns whose current version reports action) and ``result:<kind>[:<attribution>]``.
docs/figures.md says the same in prose; change both together.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from shared.vocabulary import RESULT_ATTRIBUTIONS, RESULT_KINDS, ResultKind


def rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def whole_number(value: float) -> int:
    return int(round(value))


@dataclass(frozen=True)
class Rate:
    """A share: ``part`` of ``whole``, both facts; no value (``None``) when there is no whole."""

    name: str
    label: str
    part: str
    whole: str
    definition: str
    caption: str  # words under the value: {part} and {whole} are the counts

    def of(self, figures: Mapping[str, float]) -> float | None:
        return rate(figures.get(self.part, 0), figures.get(self.whole, 0))

    def caption_of(self, figures: Mapping[str, float]) -> str:
        return self.caption.format(
            part=f"{whole_number(figures.get(self.part, 0)):,}", whole=f"{whole_number(figures.get(self.whole, 0)):,}"
        )


RETURN_RATE = Rate(
    "return_rate",
    "Return rate",
    "final",
    "recipients",
    "Final returns filed, as a share of the returns expected: one per package and recipient, "
    "onward recipients included, withdrawn packages and disseminations not counted.",
    "{part} of {whole} final returns in",
)
ON_TIME_RATE = Rate(
    "on_time_rate",
    "On-time rate",
    "on_time",
    "final",
    "Of the final returns filed, the share whose first final return came by its due date (as extended).",
    "{part} of {whole} final returns on time",
)
ACTIONED_RATE = Rate(
    "actioned_rate",
    "Actioned rate",
    "final_actioned",
    "final",
    "Of the final returns filed, the share whose current version reports action: enforcement, "
    "safeguarding, further development or passing it on. Interim returns are not counted.",
    "{part} of {whole} final returns report action",
)
ACKNOWLEDGED_RATE = Rate(
    "acknowledged_rate",
    "Acknowledgement rate",
    "acknowledged",
    "recipients",
    "Returns expected whose recipient acknowledged the package, as a share of all expected. "
    "Filing a return counts as acknowledging it.",
    "{part} of {whole} acknowledged",
)
RATES = (RETURN_RATE, ON_TIME_RATE, ACKNOWLEDGED_RATE, ACTIONED_RATE)

MEDIAN_DAYS_TO_FINAL_RETURN = (
    "Half the final returns came within this many days of the package being issued (the middle "
    "of the hour in which the first final return was filed)."
)

RESULTS_DEFINITION = (
    "Added up from the current version of every return, interim or final: an amendment replaces "
    "what it amends, and withdrawn disseminations count nothing. Direct: the recipient said the "
    "results came from this intelligence; contributed: it was one of several sources; onward: "
    "results on the returns of organisations the package was passed on to, counted once."
)
ATTRIBUTION_WORDS = {"direct": "direct", "contributed": "contributed", "onward": "onward"}

# The funnel, in order: (its key in the API, the fact it counts, the words a leader reads).
# Each stage counts a subset of the one before, so no stage shows more than the stage above it.
FUNNEL_STAGES = (
    ("recipients", "recipients", "Sent to recipients"),
    ("delivered", "delivered", "Delivered"),
    ("acknowledged", "acknowledged", "Acknowledged"),
    ("returned", "returned", "A return filed"),
    ("final", "final", "Final return filed"),
    ("actioned", "final_actioned", "Final, action taken"),
)
FUNNEL_DEFINITION = (
    "Returns expected (one per package and recipient) and how far they got. A return filed counts "
    "as acknowledged and delivered; action is counted on final returns only."
)

# How each count reads in a sentence: one, many.
COUNT_WORDS = {
    "arrests": ("arrest", "arrests"),
    "charges": ("charge", "charges"),
    "warrants_executed": ("warrant executed", "warrants executed"),
    "deal_lines_closed": ("deal line closed", "deal lines closed"),
    "people_safeguarded": ("person safeguarded", "people safeguarded"),
    "children_safeguarded": ("child safeguarded", "children safeguarded"),
    "safeguarding_referrals": ("safeguarding referral", "safeguarding referrals"),
    "weapons_seized": ("weapon seized", "weapons seized"),
}
AMOUNT_WORDS = {
    "drugs_seized_grams": "{} of drugs seized",
    "drugs_estimated_value_gbp": "drugs worth {}",
    "cash_seized_gbp": "{} cash seized",
}


def result_value(kind: ResultKind, value: float) -> int | float:
    """A result as the API and CSV give it: counts as integers; amounts as integers when whole."""
    if kind.whole:
        return whole_number(value)
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def amount_words(kind: ResultKind, value: float) -> str:
    """A result as a person reads it: '5', '£12,500', '850 g', '1.2 kg'."""
    if kind.whole:
        return f"{whole_number(value):,}"
    if kind.prefix == "£":
        return f"£{whole_number(value):,}"
    if kind.suffix == "g":
        if value >= 1000:
            kilograms = f"{value / 1000:,.1f}".removesuffix(".0")
            return f"{kilograms} kg"
        grams = f"{value:,.1f}".removesuffix(".0")
        return f"{grams} g"
    return f"{value:,}"


def result_phrase(kind: ResultKind, value: float) -> str:
    """'1 arrest', '2 weapons seized', '850 g of drugs seized', '£3,000 cash seized'."""
    if kind.name in COUNT_WORDS:
        one, many = COUNT_WORDS[kind.name]
        return f"{amount_words(kind, value)} {one if whole_number(value) == 1 else many}"
    return AMOUNT_WORDS.get(kind.name, kind.label.lower() + ": {}").format(amount_words(kind, value))


def results_words(figures: Mapping[str, float]) -> str:
    """Every result kind reported, in the vocabulary's order: '5 arrests, 2 weapons seized'."""
    return ", ".join(
        result_phrase(kind, figures[f"result:{kind.name}"])
        for kind in RESULT_KINDS
        if figures.get(f"result:{kind.name}")
    )


def results_of(figures: Mapping[str, float]) -> dict:
    """Every result kind: totals and per attribution (``direct``, ``contributed``, ``onward``)."""

    def amounts(suffix: str) -> dict:
        return {kind.name: result_value(kind, figures.get(f"result:{kind.name}{suffix}", 0)) for kind in RESULT_KINDS}

    return {"totals": amounts(""), **{attribution: amounts(f":{attribution}") for attribution in RESULT_ATTRIBUTIONS}}


def result_columns() -> list[str]:
    """The CSV's result columns: one per kind, and one per kind and attribution."""
    return [
        column
        for kind in RESULT_KINDS
        for column in (kind.name, *(f"{kind.name}_{attribution}" for attribution in RESULT_ATTRIBUTIONS))
    ]


def result_cells(results: dict) -> dict[str, int | float]:
    """``results_of`` flattened to the CSV's result columns."""
    cells: dict[str, int | float] = {}
    for kind in RESULT_KINDS:
        cells[kind.name] = results["totals"][kind.name]
        for attribution in RESULT_ATTRIBUTIONS:
            cells[f"{kind.name}_{attribution}"] = results[attribution][kind.name]
    return cells


def attribution_words(results: dict, kind: ResultKind) -> str:
    """'3 direct, 1 contributed, 0 onward' (the dashboard's caption under a result)."""
    return ", ".join(
        f"{amount_words(kind, results[attribution][kind.name])} {ATTRIBUTION_WORDS[attribution]}"
        for attribution in RESULT_ATTRIBUTIONS
    )


def median_from_histogram(histogram: Counter) -> float | None:
    """Median days to final return, from counts of final returns by whole hours after issue."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for hours in sorted(histogram, key=int):
        seen += histogram[hours]
        if seen * 2 >= total:
            return round((int(hours) + 0.5) / 24, 2)  # the bucket's middle, in days
    return None


def days_words(days: float | None) -> str:
    """Median days as the API gives them, for a page: '0.02', '3.5', '—'."""
    return "—" if days is None else f"{days:,.2f}".rstrip("0").rstrip(".")


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def judged_words(confirmed: int, judged: int) -> str:
    """The grading grid's count: '0 of 1 judged confirmed', or 'not yet judged'."""
    return f"{confirmed:,} of {judged:,} judged confirmed" if judged else "not yet judged"


GRADING_DEFINITION = (
    "For each grading, the share of recipients' judgements (on the current version of each return) "
    "that found the intelligence confirmed or partly confirmed."
)
