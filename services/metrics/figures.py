"""Reading the read model: the figures each metrics endpoint answers with. Every function
reads pre-aggregated rows (a package's, an organisation's, a year's months), never scans."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from services.metrics.definitions import (
    ACKNOWLEDGED_RATE,
    ACTIONED_RATE,
    FUNNEL_STAGES,
    ON_TIME_RATE,
    RATES,
    RETURN_RATE,
    median,
    rate,
    result_cells,
    results_of,
    results_words,
)
from services.metrics.models import Fact, HoursToReturn, Organisation, PackageState, ReturnState, TimelineEntry
from services.metrics.projections import PackageRow, ReturnRow, month_keys
from shared.vocabulary import (
    ACCURACIES,
    ACCURACY_CHOICES,
    ACTION_CHOICES,
    ACTIONS,
    PRIORITIES,
    PRIORITY_CHOICES,
    SOURCE_EVALUATIONS,
    STRANDS,
    TIMELINESS,
    TIMELINESS_CHOICES,
)
from shared.vocabulary import INTELLIGENCE_ASSESSMENTS as ASSESSMENTS


def hours_between(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 3600 if start and end else None


def breakdown(figures: Counter, prefix: str, names) -> dict[str, int]:
    return {name: int(figures[f"{prefix}:{name}"]) for name in names}


def quality_of(figures: Counter) -> dict:
    n = figures["usefulness_n"]
    return {
        "mean_usefulness": round(figures["usefulness_sum"] / n, 2) if n else None,
        "rated": int(n),
        "accuracy": breakdown(figures, "accuracy", ACCURACIES),
        "timeliness": breakdown(figures, "timeliness", TIMELINESS),
    }


def use_of(figures: Counter) -> dict:
    return {
        "by_action": breakdown(figures, "action", ACTIONS),
        "by_priority": breakdown(figures, "priority", PRIORITIES),
        "by_strand": breakdown(figures, "strand", STRANDS),
    }


def package_summary(package: PackageRow) -> dict:
    return {
        "package_id": package.package_id,
        "reference": package.reference,
        "title": package.title,
        "threat_area": package.threat_area,
        "classification": package.classification,
        "grading": f"{package.source_evaluation}{package.intelligence_assessment}{package.handling_code}",
        "issued_at": package.issued_at,
        "due_at": package.due_at,
        "withdrawn_at": package.withdrawn_at,
        "verdict": package.verdict,
        "verdict_reason": package.verdict_reason,
        "recipients": package.recipients,
        "final_returns": package.final_returns,
        "actioned_returns": package.actioned_returns,
        "arrests": package.arrests,
        "onward_recipients": package.onward_recipients,
        "onward_arrests": package.onward_arrests,
    }


SORT_COLUMNS = {
    "issued_at": PackageState.issued_at,
    "reference": PackageState.reference,
    "verdict": PackageState.verdict,
    "arrests": PackageState.arrests,
    "final_returns": PackageState.final_returns,
    "actioned_returns": PackageState.actioned_returns,
}


def package_query(args: Mapping[str, Any], classifications: list[str]) -> Select[PackageState]:
    """Issued packages of the given classifications (the reader's clearance), filtered and sorted:
    the package list, its CSV and the dashboard's recent packages."""
    query = select(PackageState).where(
        PackageState.issued_at.is_not(None), PackageState.classification.in_(classifications)
    )
    if args.get("threat_area"):
        query = query.where(PackageState.threat_area == args["threat_area"])
    if args.get("verdict"):
        query = query.where(PackageState.verdict == args["verdict"])
    if args.get("from_month"):
        start = parse_month(args["from_month"])
        query = query.where(PackageState.issued_at >= datetime(start.year, start.month, 1, tzinfo=UTC))
    if args.get("to_month"):
        end = parse_month(args["to_month"])
        year, month = (end.year + 1, 1) if end.month == 12 else (end.year, end.month + 1)
        query = query.where(PackageState.issued_at < datetime(year, month, 1, tzinfo=UTC))
    if args.get("organisation"):
        query = query.where(
            PackageState.package_id.in_(
                select(ReturnState.package_id).where(ReturnState.organisation == args["organisation"].upper())
            )
        )
    sort = args.get("sort", "-issued_at")
    column = SORT_COLUMNS[sort.lstrip("-")]
    return query.order_by(column.desc() if sort.startswith("-") else column, PackageState.reference)


def package_metrics(session: Session | None, package: PackageRow, returns: list[ReturnRow] | None = None) -> dict:
    """A package's metrics, from its own figures (kept on its row) and its returns (read here
    unless given; the session is needed only then)."""
    figures = Counter(package.figures or {})
    if returns is None:
        assert session is not None, "a package's returns are read through a session"
        returns = list(session.scalars(select(ReturnState).where(ReturnState.package_id == package.package_id)))
    live = [r for r in returns if not r.withdrawn]
    ack_hours = [h for r in live if (h := hours_between(package.issued_at, r.acknowledged_at)) is not None]
    first_hours = [h for r in live if (h := hours_between(package.issued_at, r.first_returned_at)) is not None]
    return {
        **package_summary(package),
        "reach": {
            "recipients": int(figures["recipients"]),
            "delivered": int(figures["delivered"]),
            "failed": int(figures["failed"]),
            "acknowledged": int(figures["acknowledged"]),
            "median_hours_to_acknowledge": median(ack_hours),
        },
        "compliance": {
            "expected": int(figures["recipients"]),
            "interim": int(figures["interim"]),
            "final": int(figures["final"]),
            "on_time": int(figures["on_time"]),
            "overdue_now": int(figures["overdue"]),
            "median_hours_to_first_return": median(first_hours),
        },
        "rates": {figure.name: figure.of(figures) for figure in RATES},
        "use": use_of(figures),
        "results": results_of(figures),
        "quality": quality_of(figures),
        "by_recipient": [
            {
                "organisation": r.organisation,
                "status": "withdrawn"
                if r.withdrawn
                else "returned"
                if r.final_returned_at
                else "overdue"
                if r.overdue
                else "interim"
                if r.version
                else "awaiting",
                "actions": (r.outcome or {}).get("actions", []),
                "priority": (r.outcome or {}).get("priority"),
                "version": r.version,
                "onward_from": str(r.onward_from) if r.onward_from else None,
            }
            for r in sorted(returns, key=lambda r: r.organisation or "")
        ],
    }


def package_export_row(package: PackageState, package_figures: Counter) -> dict:
    """A package's CSV row: its summary, its rates and every result kind by attribution."""
    return {
        **package_summary(package),
        "acknowledged": int(package_figures["acknowledged"]),
        **{figure.name: figure.of(package_figures) for figure in RATES},
        **result_cells(results_of(package_figures)),
    }


def facts_for(session: Session, scope: str, keys: list[str], classifications: list[str]) -> dict[str, Counter]:
    """The figures under each key, counting only packages of the given classifications (the
    reader's ``Principal.allowed_classifications``): one row per metric and marking, added up."""
    rows = session.execute(
        select(Fact.key, Fact.metric, Fact.value).where(
            Fact.scope == scope, Fact.key.in_(keys), Fact.classification.in_(classifications)
        )
    )
    found: dict[str, Counter] = {key: Counter() for key in keys}
    for key, metric, value in rows:
        found[key][metric] += value  # type: ignore[assignment]  # figures may be fractional; typeshed's Counter counts ints
    return found


def organisation_codes(session: Session, classifications: list[str]) -> list[str]:
    """Organisations that received packages the reader may see."""
    return list(
        session.scalars(
            select(Fact.key)
            .where(Fact.scope == "org", Fact.classification.in_(classifications))
            .distinct()
            .order_by(Fact.key)
        )
    )


def median_days_to_return(session: Session, codes: list[str], classifications: list[str]) -> dict[str, float | None]:
    """Each organisation's median days from issue to final return (``median_from_histogram``'s
    answer), worked out by the database from its histogram of final returns by whole hours
    (``HoursToReturn``): one row per organisation comes back. Read into Python, the histogram
    was up to ~2,200 rows per organisation at 1M returns, and made an organisation's read 3.3x
    slower than at 10k (``make bench-metrics``)."""
    histogram = HoursToReturn
    per_hour = (
        select(
            histogram.organisation.label("code"), histogram.hours.label("hour"), func.sum(histogram.value).label("n")
        )
        .where(histogram.organisation.in_(codes), histogram.classification.in_(classifications))
        .group_by(histogram.organisation, histogram.hours)
        .subquery()
    )
    running = select(
        per_hour.c.code,
        per_hour.c.hour,
        func.sum(per_hour.c.n).over(partition_by=per_hour.c.code, order_by=per_hour.c.hour).label("seen"),
        func.sum(per_hour.c.n).over(partition_by=per_hour.c.code).label("total"),
    ).subquery()
    medians = session.execute(
        select(running.c.code, func.min(running.c.hour))
        .where(running.c.total > 0, running.c.seen * 2 >= running.c.total)
        .group_by(running.c.code)
    )
    found: dict[str, float | None] = {code: None for code in codes}
    for code, hours in medians:
        found[code] = round((hours + 0.5) / 24, 2)  # the bucket's middle, in days
    return found


def organisation_metrics(
    session: Session,
    code: str,
    classifications: list[str],
    figures: Counter | None = None,
    median_days: dict[str, float | None] | None = None,
) -> dict:
    if figures is None:
        figures = facts_for(session, "org", [code], classifications)[code]
    if median_days is None:
        median_days = median_days_to_return(session, [code], classifications)
    organisation = session.get(Organisation, code)
    received = figures["recipients"]
    return {
        "code": code,
        "name": organisation.name if organisation else code,
        "region": organisation.region if organisation else None,
        "packages_received": int(received),
        "returned": int(figures["final"]),
        "final_actioned": int(figures["final_actioned"]),
        **{figure.name: figure.of(figures) for figure in RATES},
        "median_days_to_return": median_days[code],
        "overdue_now": int(figures["overdue"]),
        "results": results_of(figures),
        "quality": quality_of(figures),
        "use": use_of(figures),
    }


def every_organisation_metrics(session: Session, classifications: list[str]) -> list[dict]:
    """``organisation_metrics`` of every organisation that received packages the reader may see,
    reading the facts of all of them at once."""
    codes = organisation_codes(session, classifications)
    org_facts = facts_for(session, "org", codes, classifications)
    medians = median_days_to_return(session, codes, classifications)
    return [organisation_metrics(session, code, classifications, org_facts[code], medians) for code in codes]


def months_between(start: date, end: date) -> list[str]:
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def summary(
    session: Session,
    start: date,
    end: date,
    threat_area: str | None,
    organisation: str | None,
    classifications: list[str],
) -> dict:
    months = months_between(start, end)
    keys = {month: month_keys(month, threat_area or "*", organisation or "*")[0] for month in months}
    per_month = facts_for(session, "month", list(keys.values()), classifications)
    total: Counter = Counter()
    trend = []
    for month in months:
        figures = per_month[keys[month]]
        total.update(figures)
        trend.append(
            {
                "month": month,
                "packages": int(figures["packages"]),
                **{stage: int(figures[metric]) for stage, metric, _ in FUNNEL_STAGES},
                "arrests": int(figures["result:arrests"]),
            }
        )
    return {
        "period": {"from": months[0], "to": months[-1]},
        "threat_area": threat_area,
        "organisation": organisation,
        "packages_issued": int(total["packages"]),
        "funnel": {stage: int(total[metric]) for stage, metric, _ in FUNNEL_STAGES},
        "rates": {
            "delivered": rate(total["delivered"], total["recipients"]),
            "acknowledged": ACKNOWLEDGED_RATE.of(total),
            "returned": RETURN_RATE.of(total),
            "on_time": ON_TIME_RATE.of(total),
            "actioned": ACTIONED_RATE.of(total),
        },
        "on_time": int(total["on_time"]),
        "results": results_of(total),
        "trend": trend,
    }


def grading(session: Session, classifications: list[str]) -> dict:
    keys = [f"{s}{a}" for s in SOURCE_EVALUATIONS for a in ASSESSMENTS]
    found = facts_for(session, "grading", keys, classifications)
    cells = []
    for key in keys:
        figures = found[key]
        judged = sum(figures[a] for a in ACCURACIES)
        cells.append(
            {
                "source_evaluation": int(key[0]),
                "intelligence_assessment": key[1],
                "judged": int(judged),
                **{a: int(figures[a]) for a in ACCURACIES},
                "confirmed_rate": rate(figures["confirmed"] + figures["partly_confirmed"], judged),
            }
        )
    return {"cells": cells}


def this_year() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return date(today.year, 1, 1), today


def parse_month(value: str) -> date:
    return datetime.strptime(value, "%Y-%m").date()


def uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# -- comparisons: this period against the one before, an organisation against the nation --------


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of as many months as ``start``..``end`` (first days of months), just before it:
    January-March 2026 -> October-December 2025; one month -> the month before."""
    months = len(months_between(start, end))
    index = start.year * 12 + start.month - 1 - months  # months since year 0 of the earlier start
    first = date(index // 12, index % 12 + 1, 1)
    last_index = start.year * 12 + start.month - 2
    return first, date(last_index // 12, last_index % 12 + 1, 1)


@dataclass(frozen=True)
class Comparison:
    """A figure beside another: its value, the other, the change and the words a leader reads.

    ``change`` is in percentage points for rates (0-1 shares), in the figure's own unit otherwise;
    ``direction`` is "up", "down", "same", or None when either value is missing."""

    current: float | None
    previous: float | None
    change: float | None
    direction: str | None
    words: str


def _percent(value: float) -> str:
    return f"{round(value * 100)}%"


def _points(change: float) -> str:
    points = abs(round(change * 100))
    return f"{points} point{'' if points == 1 else 's'}"


def compare(
    current: float | None,
    previous: float | None,
    *,
    is_rate: bool = False,
    words: Callable[[float], str] | None = None,
) -> Comparison:
    """This period's figure against the previous period's: "up 5 points from 62%" (a rate, in
    whole percentage points), "down 3 from 10" (a count), "no change from 4", "none before"
    (no previous figure: nothing was expected, so there is no rate), "none now"."""
    show = words or (_percent if is_rate else lambda value: f"{int(round(value)):,}")
    if previous is None:
        return Comparison(current, None, None, None, "no previous figure")
    if current is None:
        return Comparison(None, previous, None, None, f"no figure now; it was {show(previous)}")
    # A rate's change is in the whole points the two percentages are shown in, so that "up 6
    # points from 62%" is what a leader reads beside 68%.
    change = (round(current * 100) - round(previous * 100)) / 100 if is_rate else round(current - previous, 4)
    if not change:
        return Comparison(current, previous, 0, "same", f"no change from {show(previous)}")
    direction = "up" if change > 0 else "down"
    amount = _points(change) if is_rate else show(abs(change))
    return Comparison(current, previous, change, direction, f"{direction} {amount} from {show(previous)}")


def compare_with_national(value: float | None, national: float | None) -> Comparison:
    """An organisation's rate against the national one: "5 points above the national 62%",
    "3 points below the national 80%", "the same as the national 62%"."""
    if national is None:
        return Comparison(value, None, None, None, "no national figure")
    if value is None:
        return Comparison(None, national, None, None, f"no figure; the national is {_percent(national)}")
    change = (round(value * 100) - round(national * 100)) / 100
    if not change:
        return Comparison(value, national, change, "same", f"the same as the national {_percent(national)}")
    direction = "up" if change > 0 else "down"
    side = "above" if change > 0 else "below"
    return Comparison(value, national, change, direction, f"{_points(change)} {side} the national {_percent(national)}")


def national_figures(session: Session, classifications: list[str]) -> Counter:
    """Every organisation's facts added up: the national figure an organisation's is set against
    (all packages to date, like ``organisation_metrics``)."""
    total: Counter = Counter()
    for figures in facts_for(session, "org", organisation_codes(session, classifications), classifications).values():
        total.update(figures)
    return total


def national_metrics(session: Session, classifications: list[str]) -> dict:
    """The national rates and results: the same keys as ``organisation_metrics``'s."""
    figures = national_figures(session, classifications)
    return {
        "packages_received": int(figures["recipients"]),
        "returned": int(figures["final"]),
        "final_actioned": int(figures["final_actioned"]),
        **{figure.name: figure.of(figures) for figure in RATES},
        "overdue_now": int(figures["overdue"]),
        "results": results_of(figures),
        "quality": quality_of(figures),
    }


def compliance_by_month(
    session: Session,
    start: date,
    end: date,
    threat_area: str | None,
    organisation: str | None,
    classifications: list[str],
) -> list[dict]:
    """Month by month (by the month each package was issued): returns expected, final returns in,
    on time, and the return and on-time rates; the same facts as ``summary``'s."""
    months = months_between(start, end)
    keys = {month: month_keys(month, threat_area or "*", organisation or "*")[0] for month in months}
    per_month = facts_for(session, "month", list(keys.values()), classifications)
    rows = []
    for month in months:
        figures = per_month[keys[month]]
        rows.append(
            {
                "month": month,
                "expected": int(figures["recipients"]),
                "final": int(figures["final"]),
                "on_time": int(figures["on_time"]),
                "return_rate": RETURN_RATE.of(figures),
                "on_time_rate": ON_TIME_RATE.of(figures),
            }
        )
    return rows


# -- a package's story, from the timeline the projection keeps ----------------------------------

# Events of one moment, in the order they are told (a return that passes the package on is told
# before the pass-on it made; the withdrawal of a pass-on after the return that withdrew it).
TIMELINE_ORDER = {
    "issued": 0,
    "delivered": 1,
    "delivery_failed": 2,
    "acknowledged": 3,
    "chased": 4,
    "overdue": 5,
    "extended": 6,
    "returned": 7,
    "passed_on": 8,
    "dissemination_withdrawn": 9,
    "withdrawn": 10,
}
NOTIFY_WORDS = {"recipient": "to the recipient", "escalation": "to its escalation contact", "centre": "to the centre"}
CHANNEL_WORDS = {"email": "by e-mail", "webhook": "by webhook", "notify": "by GOV.UK Notify", "inbox": "in the inbox"}


def _choice_labels(choices) -> dict[str, str]:
    return {choice.value: choice.label for choice in choices}


def day_and_time(moment: datetime | str | None) -> str:
    """'1 Dec 2026, 14:05' (UTC)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y}, {moment:%H:%M}"


def listed_words(names: list[str]) -> str:
    """'GMP', 'GMP and MPS', 'GMP, MPS and WMP'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""


def return_version_words(detail: dict, onward: bool, previous_status: str | None = None) -> tuple[str, list[str]]:
    """A return version as the package page tells it: its heading and its lines. ``previous_status``:
    the status of the version before it (None for the first), which decides how it is told:
    "Final return filed", "Final return filed, after an interim one", "Final return amended"."""
    actions = _choice_labels(ACTION_CHOICES)
    priorities = _choice_labels(PRIORITY_CHOICES)
    accuracies = _choice_labels(ACCURACY_CHOICES)
    timeliness = _choice_labels(TIMELINESS_CHOICES)
    status = detail.get("status") or "?"
    version = detail.get("version")
    if previous_status == "final":
        heading = "Final return amended"
    elif previous_status == "interim":
        heading = "Final return filed, after an interim one" if status == "final" else "Interim return updated"
    elif detail.get("amendment"):  # an earlier version not (yet) in the timeline
        heading = f"{status.capitalize()} return amended"
    else:
        heading = f"{status.capitalize()} return filed"
    heading += f" (version {version}"
    if status == "final" and detail.get("on_time") is not None:
        heading += ", on time" if detail["on_time"] else ", late"
    heading += ")"
    outcome = detail.get("outcome") or {}
    lines = []
    taken = [a for a in outcome.get("actions", []) if a != "no_action"]
    if taken:
        line = "Action: " + ", ".join(actions.get(a, a).lower() for a in taken)
        if outcome.get("passed_to"):
            line += f" (passed to {outcome['passed_to']})"
        lines.append(line + ".")
    if "no_action" in outcome.get("actions", []):
        reason = outcome.get("no_action_reason")
        lines.append("No action" + (f": {reason}" if reason else "."))
    results = {f"result:{name}": value for name, value in (outcome.get("results") or {}).items() if value}
    if results:
        attribution = "onward" if onward else outcome.get("attribution") or "unattributed"
        lines.append(f"Results ({attribution}): {results_words(results)}.")
    elif taken:
        lines.append("No results reported.")
    priority = outcome.get("priority")
    if priority:
        line = f"Priority: {priorities.get(priority, priority).lower()}"
        if outcome.get("tasking_forum"):
            line += f", set by {outcome['tasking_forum']}"
        lines.append(line + ".")
    feedback = outcome.get("intelligence_feedback") or {}
    said = []
    if feedback.get("usefulness"):
        said.append(f"usefulness {feedback['usefulness']} of 5")
    if feedback.get("accuracy"):
        said.append(accuracies.get(feedback["accuracy"], feedback["accuracy"]).lower())
    if feedback.get("timeliness"):
        said.append(timeliness.get(feedback["timeliness"], feedback["timeliness"]).lower())
    if said:
        lines.append("On the intelligence: " + ", ".join(said) + ".")
    return heading, lines


def entry_words(
    entry: TimelineEntry, organisations: dict[str, str], onward: bool, previous_status: str | None = None
) -> tuple[str, list[str]]:
    """What one timeline entry says: its heading and its lines."""
    detail = entry.detail or {}
    kind = entry.kind
    if kind == "issued":
        recipients = [d["organisation"] for d in detail.get("disseminations", [])]
        lines = [f"Returns due {day_and_time(detail['due_at'])}."] if detail.get("due_at") else []
        return f"Issued to {listed_words(recipients)}", lines
    if kind == "passed_on":
        sources = [organisations.get(d.get("onward_from") or "", "?") for d in detail.get("disseminations", [])]
        targets = [d["organisation"] for d in detail.get("disseminations", [])]
        due = [d.get("due_at") for d in detail.get("disseminations", []) if d.get("due_at")]
        lines = [f"Its return due {day_and_time(due[0])}."] if due else []
        return f"Passed on by {listed_words(sorted(set(sources)))} to {listed_words(targets)}", lines
    if kind == "delivered":
        return "Delivered " + CHANNEL_WORDS.get(detail.get("channel") or "", "").strip(), []
    if kind == "delivery_failed":
        attempts = detail.get("attempts")
        return "Delivery failed" + (f" after {attempts} attempts" if attempts else ""), []
    if kind == "acknowledged":
        return "Acknowledged", []
    if kind == "chased":
        step = (detail.get("step") or "chase").replace("_", " ")
        how = ", ".join(
            filter(None, (NOTIFY_WORDS.get(detail.get("notify") or ""), CHANNEL_WORDS.get(detail.get("channel") or "")))
        )
        return f"Chased: {step}" + (f" ({how})" if how else ""), []
    if kind == "returned":
        return return_version_words(detail, onward, previous_status)
    if kind == "overdue":
        return "Overdue", [f"It was due {day_and_time(detail['due_at'])}."] if detail.get("due_at") else []
    if kind == "extended":
        lines = [f"Reason: {detail['reason']}"] if detail.get("reason") else []
        return f"Due date extended to {day_and_time(detail.get('due_at'))}", lines
    if kind == "dissemination_withdrawn":
        return "Withdrawn from this organisation", [f"Reason: {detail['reason']}"] if detail.get("reason") else []
    if kind == "withdrawn":
        return "Withdrawn by the centre", [f"Reason: {detail['reason']}"] if detail.get("reason") else []
    return kind.replace("_", " ").capitalize(), []


def package_timeline(session: Session, package: PackageState) -> dict:
    """A package's whole story, from its timeline rows (one per event, kept by the projection):

    ``package``: what happened to the package itself (drafted, issued, withdrawn), in order;
    ``recipients``: per recipient (in the order they got it), its status and what happened to its
    return, in order; ``chain``: who passed it to whom. The caller checks the reader's clearance."""
    returns = session.scalars(select(ReturnState).where(ReturnState.package_id == package.package_id)).all()
    entries = session.scalars(select(TimelineEntry).where(TimelineEntry.package_id == package.package_id)).all()
    entries = sorted(entries, key=lambda e: (e.occurred_at, TIMELINE_ORDER.get(e.kind, 99), str(e.event_id)))
    organisations = {str(r.return_id): r.organisation or "?" for r in returns}
    for entry in entries:  # the timeline knows returns the model may not (e.g. before package.issued)
        if entry.return_id and entry.organisation:
            organisations.setdefault(str(entry.return_id), entry.organisation)
        for d in (entry.detail or {}).get("disseminations", []):
            organisations.setdefault(d["return_id"], d["organisation"])
    by_return = {r.return_id: r for r in returns}
    own: list[dict] = []
    per_return: dict[str, list[dict]] = {}
    chain = []
    first_seen: dict[str, datetime] = {}
    statuses: dict[uuid.UUID, str] = {}  # the status of each return's latest version told so far

    def add(return_id: str, item: dict) -> None:
        per_return.setdefault(return_id, []).append(item)
        first_seen.setdefault(return_id, item["at"])

    for entry in entries:
        onward = bool(entry.return_id and by_return.get(entry.return_id) and by_return[entry.return_id].onward_from)
        previous_status = statuses.get(entry.return_id) if entry.return_id else None
        heading, lines = entry_words(entry, organisations, onward, previous_status)
        if entry.kind == "returned" and entry.return_id:
            statuses[entry.return_id] = (entry.detail or {}).get("status") or "?"
        item = {
            "kind": entry.kind,
            "at": entry.occurred_at,
            "when": day_and_time(entry.occurred_at),
            "heading": heading,
            "lines": lines,
            "detail": entry.detail or {},
        }
        if entry.kind == "issued":
            drafted = (entry.detail or {}).get("drafted_at")
            if drafted:
                own.append(
                    {
                        **item,
                        "kind": "drafted",
                        "at": datetime.fromisoformat(drafted),
                        "when": day_and_time(drafted),
                        "heading": "Drafted",
                        "lines": [],
                    }
                )
            own.append(item)
            for d in (entry.detail or {}).get("disseminations", []):
                add(
                    d["return_id"],
                    {
                        **item,
                        "heading": "Sent",
                        "lines": [f"Return due {day_and_time(d['due_at'])}."] if d.get("due_at") else [],
                    },
                )
        elif entry.kind == "passed_on":
            for d in (entry.detail or {}).get("disseminations", []):
                source = d.get("onward_from")
                chain.append(
                    {
                        "from": organisations.get(source or "", "?"),
                        "to": d["organisation"],
                        "at": entry.occurred_at,
                        "when": day_and_time(entry.occurred_at),
                        "return_id": d["return_id"],
                        "from_return_id": source,
                        "withdrawn": bool(
                            by_return.get(uuid.UUID(d["return_id"])) and by_return[uuid.UUID(d["return_id"])].withdrawn
                        ),
                    }
                )
                add(d["return_id"], {**item, "heading": f"Passed on to it by {organisations.get(source or '', '?')}"})
                if source:
                    add(source, {**item, "heading": f"Passed it on to {d['organisation']}", "lines": []})
        elif entry.kind == "withdrawn":
            own.append(item)
        elif entry.return_id is not None:
            add(str(entry.return_id), item)
    recipients = []
    for return_id in sorted(per_return, key=lambda key: (first_seen[key], organisations.get(key, ""))):
        state = by_return.get(uuid.UUID(return_id))
        source = str(state.onward_from) if state and state.onward_from else None
        recipients.append(
            {
                "return_id": return_id,
                "organisation": organisations.get(return_id, "?"),
                "status": return_status(state),
                "onward_from": organisations.get(source) if source else None,
                "entries": per_return[return_id],
            }
        )
    return {"package": sorted(own, key=lambda item: item["at"]), "recipients": recipients, "chain": chain}


def return_status(ret: ReturnState | None) -> str:
    """The return's status as ``package_metrics``'s by_recipient gives it."""
    if ret is None:
        return "awaiting"
    if ret.withdrawn:
        return "withdrawn"
    if ret.final_returned_at:
        return "returned"
    if ret.overdue:
        return "overdue"
    return "interim" if ret.version else "awaiting"


def organisation_packages(
    session: Session, args: Mapping[str, Any], code: str, classifications: list[str], limit: int = 200
) -> list[dict]:
    """The packages sent (or passed on) to an organisation, most recent first, each with the
    state of that organisation's return: ``package_query``'s filters, and its own return."""
    query = package_query({**args, "organisation": code}, classifications).limit(limit)
    packages = session.scalars(query).all()
    returns = {
        r.package_id: r
        for r in session.scalars(
            select(ReturnState).where(
                ReturnState.organisation == code, ReturnState.package_id.in_([p.package_id for p in packages])
            )
        )
    }
    return [
        {
            **package_summary(p),
            "return_status": return_status(returns.get(p.package_id)),
            "onward": bool(returns.get(p.package_id) and returns[p.package_id].onward_from),
        }
        for p in packages
    ]
