"""Reading the read model: the figures each metrics endpoint answers with. Every function
reads pre-aggregated rows (a package's, an organisation's, a year's months), never scans."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from services.metrics.definitions import (
    ACKNOWLEDGED_RATE,
    ACTIONED_RATE,
    FUNNEL_STAGES,
    ON_TIME_RATE,
    RATES,
    RETURN_RATE,
    median,
    median_from_histogram,
    rate,
    result_cells,
    results_of,
)
from services.metrics.models import Fact, Organisation, PackageState, ReturnState
from services.metrics.projections import month_keys, package_facts
from shared.vocabulary import (
    ACCURACIES,
    ACTIONS,
    PRIORITIES,
    SOURCE_EVALUATIONS,
    STRANDS,
    TIMELINESS,
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


def package_summary(package: PackageState) -> dict:
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


def package_metrics(session: Session, package: PackageState) -> dict:
    figures = package_facts(session, package.package_id)
    returns = session.scalars(select(ReturnState).where(ReturnState.package_id == package.package_id)).all()
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


def organisation_metrics(
    session: Session,
    code: str,
    classifications: list[str],
    figures: Counter | None = None,
    hours: Counter | None = None,
) -> dict:
    if figures is None:
        figures = facts_for(session, "org", [code], classifications)[code]
    if hours is None:
        hours = facts_for(session, "org_hours", [code], classifications)[code]
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
        "median_days_to_return": median_from_histogram(hours),
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
    hour_facts = facts_for(session, "org_hours", codes, classifications)
    return [organisation_metrics(session, code, classifications, org_facts[code], hour_facts[code]) for code in codes]


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
