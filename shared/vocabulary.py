"""The spec's words, said once: every choice a package or an outcome return offers, in order,
with the words a person reads where a page shows them.

Schemas validate against these, models and the metrics read model count by them, the outcomes
form and the dashboard label them, and the benchmarks generate them. A new threat area, action
or result kind is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """A value offered to people, with its label and an optional hint under it."""

    value: str
    label: str
    hint: str = ""


@dataclass(frozen=True)
class ResultKind:
    """One figure an outcome return reports: a count (``whole``) or an amount."""

    name: str
    label: str
    whole: bool
    prefix: str = ""
    suffix: str = ""
    short: str = ""  # in error messages, when the label is long
    maximum: float = 100_000

    @property
    def key(self) -> str:
        return f"results.{self.name}"


def values(choices: tuple[Choice, ...]) -> tuple[str, ...]:
    return tuple(choice.value for choice in choices)


def labels(choices: tuple[Choice, ...]) -> dict[str, str]:
    return {choice.value: choice.label for choice in choices}


# --- who may do what ----------------------------------------------------------------------

ROLES = ("issuer", "recipient", "leader", "admin")
# Roles that reach across organisations; they belong to the centre's staff alone.
CENTRE_ROLES = frozenset({"issuer", "admin", "leader"})
LEADER_ROLES = ("leader", "admin")

# Government Security Classifications, lowest first: clearance compares by this order.
CLASSIFICATIONS = ("OFFICIAL", "OFFICIAL-SENSITIVE", "SECRET", "TOP SECRET")

# --- packages -----------------------------------------------------------------------------

THREAT_AREAS = (
    "county_lines",
    "drugs_supply",
    "exploitation",
    "firearms",
    "modern_slavery",
    "economic_crime",
    "other",
)
# The 3x5x2 grading: source evaluation, intelligence assessment, handling code.
SOURCE_EVALUATION_LABELS = {1: "Reliable", 2: "Untested", 3: "Not reliable"}
SOURCE_EVALUATIONS = tuple(SOURCE_EVALUATION_LABELS)
INTELLIGENCE_ASSESSMENT_LABELS = {
    "A": "Known directly",
    "B": "Known indirectly, corroborated",
    "C": "Known indirectly",
    "D": "Not known",
    "E": "Suspected false",
}
INTELLIGENCE_ASSESSMENTS = tuple(INTELLIGENCE_ASSESSMENT_LABELS)
HANDLING_CODE_LABELS = {
    "P": "Lawful sharing permitted",
    "C": "Lawful sharing permitted subject to conditions",
}
HANDLING_CODES = tuple(HANDLING_CODE_LABELS)


def grading_words(source_evaluation: int, intelligence_assessment: str) -> str:
    """The grading in words as well as code: ``2B: untested source, known indirectly, corroborated``."""
    source = SOURCE_EVALUATION_LABELS.get(source_evaluation, "unknown").lower()
    assessment = INTELLIGENCE_ASSESSMENT_LABELS.get(intelligence_assessment, "unknown")
    return f"{source_evaluation}{intelligence_assessment}: {source} source, {assessment[0].lower()}{assessment[1:]}"


# --- outcome returns ----------------------------------------------------------------------

RETURN_STATUS_CHOICES = (
    Choice("interim", "Interim", "Work is still going on; you will send another return when it ends."),
    Choice("final", "Final", "This is the full outcome. You can still correct it later."),
)
RETURN_STATUSES = values(RETURN_STATUS_CHOICES)

ACTION_CHOICES = (
    Choice("enforcement", "Enforcement", "For example arrests, warrants or seizures."),
    Choice("safeguarding", "Safeguarding", "For example visits, referrals or moving someone to safety."),
    Choice("further_development", "Developed it further", "More intelligence work before acting."),
    Choice("recorded_only", "Recorded it only"),
    Choice("passed_on", "Passed it to another organisation"),
    Choice("no_action", "No action"),
)
ACTIONS = values(ACTION_CHOICES)
# The actions that count a return (and its package) as actioned.
ACTIONED = ("enforcement", "safeguarding", "further_development", "passed_on")

PRIORITY_CHOICES = (
    Choice("high", "High"),
    Choice("medium", "Medium"),
    Choice("low", "Low"),
    Choice("not_prioritised", "Not prioritised"),
)
PRIORITIES = values(PRIORITY_CHOICES)
# A priority a tasking forum set (and so must be named).
PRIORITISED = ("high", "medium", "low")

ATTRIBUTION_CHOICES = (
    Choice("direct", "Directly", "The results came from this intelligence."),
    Choice("contributed", "It contributed", "It was one of several sources that led to the results."),
)
ATTRIBUTIONS = values(ATTRIBUTION_CHOICES)
# How the figures attribute results: as the recipient said, or "onward" for every result on the
# return of an organisation the package was passed on to (counted toward the original package).
RESULT_ATTRIBUTIONS = (*ATTRIBUTIONS, "onward")

STRAND_CHOICES = (
    Choice("pursue", "Pursue", "Prosecuting and disrupting the people involved."),
    Choice("prevent", "Prevent", "Stopping people getting involved."),
    Choice("protect", "Protect", "Safeguarding and reducing vulnerability."),
    Choice("prepare", "Prepare", "Reducing the harm the crime causes."),
)
STRANDS = values(STRAND_CHOICES)

USEFULNESS_SCORES = (1, 2, 3, 4, 5)  # 1 not useful - 5 very useful

ACCURACY_CHOICES = (
    Choice("confirmed", "Confirmed", "What you found matched it."),
    Choice("partly_confirmed", "Partly confirmed"),
    Choice("not_confirmed", "Not confirmed", "You could not check it either way."),
    Choice("false", "False", "What you found showed it was wrong."),
)
ACCURACIES = values(ACCURACY_CHOICES)

TIMELINESS_CHOICES = (
    Choice("timely", "In time to act on"),
    Choice("late_but_useful", "Late, but still useful"),
    Choice("too_late", "Too late to be useful"),
)
TIMELINESS = values(TIMELINESS_CHOICES)

RESULT_KINDS = (
    ResultKind("arrests", "Arrests", True),
    ResultKind("charges", "Charges", True),
    ResultKind("warrants_executed", "Warrants executed", True),
    ResultKind("deal_lines_closed", "Deal lines closed", True),
    ResultKind("people_safeguarded", "People safeguarded", True),
    ResultKind("children_safeguarded", "Of those, children safeguarded", True, short="Children safeguarded"),
    ResultKind("safeguarding_referrals", "Safeguarding referrals", True),
    ResultKind("drugs_seized_grams", "Drugs seized, in grams", False, suffix="g", short="Drugs seized", maximum=1e9),
    ResultKind(
        "drugs_estimated_value_gbp",
        "Estimated value of the drugs, in pounds",
        False,
        prefix="£",
        short="The value of the drugs",
        maximum=1e10,
    ),
    ResultKind("cash_seized_gbp", "Cash seized, in pounds", False, prefix="£", short="Cash seized", maximum=1e10),
    ResultKind("weapons_seized", "Weapons seized", True),
)
RESULT_FIELDS = tuple(kind.name for kind in RESULT_KINDS)
COUNT_FIELDS = tuple(kind.name for kind in RESULT_KINDS if kind.whole)
AMOUNT_FIELDS = tuple(kind.name for kind in RESULT_KINDS if not kind.whole)

# --- figures ------------------------------------------------------------------------------

VERDICT_LABELS = {
    "actioned": "Actioned",
    "no_action": "No action",
    "awaiting": "Awaiting returns",
    "overdue": "Overdue",
}
VERDICTS = tuple(VERDICT_LABELS)
