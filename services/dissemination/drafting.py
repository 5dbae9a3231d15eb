"""Drafting packages: the rules a package must meet, and its reference number."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.dissemination.directory import known_codes
from services.dissemination.models import Package, PackageRecipient, ReferenceCounter
from shared.auth import Principal, clearance_rank
from shared.db import utcnow
from shared.errors import Conflict, Invalid
from shared.settings import Settings

MAX_DUE_AHEAD = timedelta(days=366)
# Fields a package always has: an edit may change them, never empty them.
REQUIRED_FIELDS = (
    "title",
    "summary",
    "threat_area",
    "classification",
    "source_evaluation",
    "intelligence_assessment",
    "handling_code",
)


def package_problems(session: Session, settings: Settings, principal: Principal, values: dict) -> dict[str, str]:
    """Every rule the spec sets on a package, checked against the values it would have.

    Returns {field: message}; empty when the package is acceptable.
    """
    problems: dict[str, str] = {}
    classification = values.get("classification")
    if classification and clearance_rank(classification) > clearance_rank(settings.max_classification):
        problems["classification"] = (
            f"{classification} is above the highest classification this service may hold "
            f"({settings.max_classification}). Send it through an accredited system."
        )
    elif classification and not principal.cleared_for(classification):
        problems["classification"] = f"Your clearance ({principal.clearance}) is below {classification}."
    if values.get("handling_code") == "C" and not (values.get("handling_conditions") or "").strip():
        problems["handling_conditions"] = "Handling code C needs the handling conditions."
    recipients = values.get("recipients") or []
    known = known_codes(session, recipients)
    unknown = [code for code in recipients if code not in known]
    if unknown:
        problems["recipients"] = f"Unknown or inactive organisation: {', '.join(unknown)}."
    if values.get("outcome_due_at") and values.get("outcome_due_working_days"):
        problems["outcome_due_working_days"] = "Give a due date or a number of working days, not both."
    due = values.get("outcome_due_at")
    if due is not None:
        problem = due_date_problem(due, settings)
        if problem:
            problems["outcome_due_at"] = problem
    return problems


def due_date_problem(due: datetime, settings: Settings, now: datetime | None = None) -> str | None:
    now = now or utcnow()
    minimum = timedelta(seconds=settings.min_due_seconds)
    if due < now + minimum:
        ahead = "an hour" if settings.min_due_seconds == 3600 else f"{settings.min_due_seconds} seconds"
        return f"The outcome due date must be at least {ahead} in the future."
    if due > now + MAX_DUE_AHEAD:
        return "The outcome due date must be within a year."
    return None


def next_reference(session: Session, year: int) -> str:
    """Allocate NCLCC-<year>-<6 digits>. The counter row is updated in place, which locks it
    until commit, so two issuers never get the same number."""
    for _attempt in range(3):
        number = session.execute(
            update(ReferenceCounter)
            .where(ReferenceCounter.year == year)
            .values(last=ReferenceCounter.last + 1)
            .returning(ReferenceCounter.last)
        ).scalar()
        if number is not None:
            return f"NCLCC-{year}-{number:06d}"
        try:
            with session.begin_nested():
                session.execute(insert(ReferenceCounter).values(year=year, last=0))
        except IntegrityError:
            pass  # another transaction created the year's counter first
    raise RuntimeError("could not allocate a package reference")


def check_rules(session: Session, settings: Settings, principal: Principal, values: dict) -> None:
    """Raise ``Invalid`` naming each field whose value breaks a package rule."""
    problems = package_problems(session, settings, principal, values)
    if problems:
        raise Invalid(problems)


def create_draft(session: Session, settings: Settings, principal: Principal, values: dict) -> Package:
    check_rules(session, settings, principal, values)
    recipients = values.pop("recipients", [])
    package = Package(
        **values,
        reference=next_reference(session, utcnow().year),
        status="draft",
        created_by=principal.sub,
        created_by_org=principal.org,
    )
    set_recipients(package, recipients)
    session.add(package)
    session.flush()
    return package


def edit_draft(session: Session, settings: Settings, principal: Principal, package: Package, values: dict) -> None:
    """Change a draft. Issued packages cannot change: withdraw and issue a new one."""
    if package.status != "draft":
        raise Conflict(f"Package {package.reference} is {package.status}; only a draft can be edited.")
    nulls = {name: "Field may not be null." for name in REQUIRED_FIELDS if name in values and values[name] is None}
    if nulls:
        raise Invalid(nulls)
    check_rules(session, settings, principal, merged_values(package, values))
    update_draft(package, values)


def update_draft(package: Package, values: dict) -> None:
    recipients = values.pop("recipients", None)
    for name, value in values.items():
        setattr(package, name, value)
    if recipients is not None:
        set_recipients(package, recipients)


def set_recipients(package: Package, codes: list[str]) -> None:
    package.recipient_links = [PackageRecipient(organisation=code, position=index) for index, code in enumerate(codes)]


def merged_values(package: Package, changes: dict) -> dict:
    """What the package would hold after ``changes``, for checking the rules as a whole."""
    names = (
        "classification",
        "handling_code",
        "handling_conditions",
        "outcome_due_at",
        "outcome_due_working_days",
    )
    values = {name: getattr(package, name) for name in names}
    values["recipients"] = package.recipients
    values.update(changes)
    return values


def packages_visible_query(principal: Principal):
    """Packages the caller may list: all to the centre's roles, the issued ones sent to their
    organisation to a recipient; never above the caller's clearance."""
    from services.dissemination.models import Dissemination

    query = select(Package).where(Package.classification.in_(principal.allowed_classifications))
    if not principal.is_centre:
        query = query.where(
            Package.status != "draft",
            Package.id.in_(select(Dissemination.package_id).where(Dissemination.organisation == principal.org)),
        )
    return query
