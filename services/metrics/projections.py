"""Events into the read model.

Every handler follows one rule: take what the touched returns and packages contributed to the
figures before the batch touched them, change their state, take what they contribute after, and
add the difference (once per return and package per batch, however many of its events the batch
holds). So an amendment replaces the earlier outcome in every figure (its old contribution
is taken away), events may arrive twice (the inbox drops repeats) or out of order (a late
``package.issued`` adds what its returns could not contribute without it), and a rebuild from
the event logs ends in the same figures as the live model.

A package's own figures live on its row (``packages.figures``, with its verdict and the counts
leaders sort by); per organisation, per month (with threat-area and organisation roll-ups) and
per grading they live in ``facts``, one row per classification of the packages counted (readers
add up the markings their clearance allows). ``Projector`` applies a batch of events and writes
each touched row and figure once, which is how the benchmark loads a million returns.

Because each event adds the difference it makes, the facts always equal the sum of every
return's ``contribution`` and every package's ``package_contribution`` in their current state,
and a package's figures the sum of its returns' ``return_figures``; ``facts_from_state`` and
``package_figures_from_state`` recompute them that way (used by migrations and tests).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import cache, lru_cache
from operator import attrgetter
from types import SimpleNamespace
from typing import NamedTuple, cast

from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.attributes import set_committed_value

from services.metrics.definitions import results_words
from services.metrics.models import Fact, HoursToReturn, Organisation, PackageState, ReturnState, TimelineEntry
from shared.db import (
    among,
    chunks,
    execute_write,
    in_write_pipeline,
    insert_rows,
    pipelined_writes,
    rows_as_json,
    rows_from_json,
    update_rows,
    value_or_default,
)
from shared.vocabulary import ACTIONED, RESULT_FIELDS

HOURS_CAP = 24 * 400
# The figures rolled up per month (the summary, its funnel and its trend); results are added too.
MONTH_METRICS = (
    "recipients",
    "delivered",
    "acknowledged",
    "returned",
    "final",
    "on_time",
    "actioned",
    "final_actioned",
)
MONTHLY = frozenset(MONTH_METRICS)
FactKey = tuple[str, str, str, str]  # scope, key, metric, classification
PACKAGE_CLASSIFICATION = ""  # a package's own facts: its marking is checked on the package itself
UNKNOWN_CLASSIFICATION = "?"  # no clearance includes it


class StateRow(SimpleNamespace):
    """A row of ``returns`` or ``packages`` as the projector reads and changes it: plain
    attributes, read with Core and written back by ``Projector.flush`` in one statement per
    table. Through the ORM, its unit of work sent one UPDATE per changed row and its attribute
    tracking ran on every read and change: about half of a bulk load (py-spy, bench-metrics)."""


# What the figures are worked out from: a model's row, or the projector's plain one.
ReturnRow = ReturnState | StateRow
PackageRow = PackageState | StateRow


@lru_cache(maxsize=1 << 15)  # a batch's ids, and those it shares with the next
def id_of(text: str) -> uuid.UUID:
    """An id named in an event, parsed once: a batch meets each several times (its prefetch, its
    handler, its timeline row, the inbox); parsing them was 7% of a bulk load (py-spy)."""
    return uuid.UUID(text)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"  # strftime's cost, twice per return a batch changes


@cache  # a few thousand combinations; asked for twice per return a batch changes
def month_keys(month: str, threat_area: str | None, organisation: str | None) -> tuple[str, ...]:
    """The monthly roll-ups a return counts in: exact, by threat area, by organisation, all."""
    org = organisation or "?"
    return (f"{month}|{threat_area}|{org}", f"{month}|{threat_area}|*", f"{month}|*|{org}", f"{month}|*|*")


def is_actioned(outcome: dict | None) -> bool:
    return outcome is not None and any(action in ACTIONED for action in outcome.get("actions", []))


def return_figures(ret: ReturnRow) -> Counter:
    """What one return adds to any figure it counts in (the figures it adds nothing to left out)."""
    figures: Counter = Counter()
    if ret.withdrawn:
        figures["withdrawn"] = 1
        return figures
    figures["recipients"] = 1
    if ret.onward_from:
        figures["onward"] = 1
    # Filing counts as acknowledgement (and an acknowledged package was delivered), whatever order
    # the events came in: no stage of the funnel ever counts more than the stage before it.
    acknowledged = bool(ret.acknowledged_at or ret.first_returned_at)
    if ret.delivered_at or acknowledged:
        figures["delivered"] = 1
    elif ret.delivery_failed:
        figures["failed"] = 1
    if acknowledged:
        figures["acknowledged"] = 1
    if ret.first_returned_at:
        figures["returned"] = 1
    if ret.version and ret.outcome_status == "interim":
        figures["interim"] = 1
    if ret.final_returned_at:
        figures["final"] = 1
    if ret.final_on_time:
        figures["on_time"] = 1
    if ret.overdue and not ret.final_returned_at:
        figures["overdue"] = 1
    if ret.chases_sent:
        figures["chases_sent"] = ret.chases_sent
    outcome = ret.outcome
    if outcome:
        actions = outcome.get("actions", [])
        if is_actioned(outcome):
            figures["actioned"] = 1
            # The actioned rate's numerator: final returns whose current version reports action.
            if ret.final_returned_at:
                figures["final_actioned"] = 1
        if "no_action" in actions:
            figures["no_action"] = 1
        for action in actions:
            figures[f"action:{action}"] += 1
        figures[f"priority:{outcome.get('priority')}"] += 1
        for strand in outcome.get("strands", []):
            figures[f"strand:{strand}"] += 1
        # Results along a pass-on count toward the package as "onward", whatever the recipient
        # said of its own intelligence; each return counts once, in its current version.
        attribution = "onward" if ret.onward_from else outcome.get("attribution") or "unattributed"
        for name in RESULT_FIELDS:
            value = (outcome.get("results") or {}).get(name) or 0
            if value:
                figures[f"result:{name}"] += value
                figures[f"result:{name}:{attribution}"] += value
        feedback = outcome.get("intelligence_feedback") or {}
        if feedback.get("usefulness"):
            figures["usefulness_sum"] += feedback["usefulness"]
            figures["usefulness_n"] += 1
        if feedback.get("accuracy"):
            figures[f"accuracy:{feedback['accuracy']}"] += 1
        if feedback.get("timeliness"):
            figures[f"timeliness:{feedback['timeliness']}"] += 1
    return figures


class Counting(NamedTuple):
    """Where a return's figures are filed in the facts: everything ``contribution`` takes from the
    return and its package but the figures themselves. Two returns (or one, before and after a
    change) with the same ``Counting`` file their figures in the same fact rows."""

    marking: str  # the package's classification: every fact is filed under it
    organisation: str | None
    month: str  # the month the package was issued
    threat_area: str | None
    hours: str | None  # hours from issue to the first final return (the org_hours histogram)
    grading: str  # the package's source evaluation and intelligence assessment
    accuracy: str | None  # the return's judgement of the intelligence, graded


def counting_of(package: PackageRow | None, ret: ReturnRow) -> Counting | None:
    """Where ``ret`` is counted; None while it counts in no fact: withdrawn, or its package not
    described yet (``package.issued`` not applied: events about a package may come before it, and
    the difference rule adds the return when the package arrives)."""
    if ret.withdrawn or package is None or package.issued_at is None:
        return None
    hours = None
    if ret.organisation and ret.final_returned_at:
        elapsed = (ret.final_returned_at - package.issued_at).total_seconds()
        hours = str(max(0, min(HOURS_CAP, int(elapsed // 3600))))
    accuracy = ((ret.outcome or {}).get("intelligence_feedback") or {}).get("accuracy")
    return Counting(
        package.classification or UNKNOWN_CLASSIFICATION,
        ret.organisation,
        month_of(package.issued_at),
        package.threat_area,
        hours,
        f"{package.source_evaluation}{package.intelligence_assessment}",
        accuracy,
    )


def add_figures(facts: Counter, counting: Counting, figures: dict, sign: int = 1) -> None:
    """Add ``figures`` (times ``sign``) to the facts they are filed in at ``counting``: the
    organisation's, and the monthly roll-ups' (those of ``MONTH_METRICS`` and the results).
    Linear in the figures, so a change's difference can be added alone."""
    marking, organisation = counting.marking, counting.organisation
    if organisation:
        for metric, value in figures.items():
            facts[("org", organisation, metric, marking)] += sign * value
    monthly = [(metric, value) for metric, value in figures.items() if metric in MONTHLY or metric[:7] == "result:"]
    if monthly:
        for key in month_keys(counting.month, counting.threat_area, organisation):
            for metric, value in monthly:
                facts[("month", key, metric, marking)] += sign * value


def add_counted(facts: Counter, counting: Counting, sign: int = 1) -> None:
    """The facts a return adds one to by where it is counted, not by its figures: its hour in the
    organisation's histogram, its accuracy against the package's grading."""
    if counting.hours is not None:
        facts[(HOURS_SCOPE, counting.organisation, counting.hours, counting.marking)] += sign
    if counting.accuracy:
        facts[("grading", counting.grading, counting.accuracy, counting.marking)] += sign


def contribution(package: PackageRow | None, ret: ReturnRow, figures: Counter | None = None) -> Counter:
    """Everything one return adds to the read model's facts, given its package (if known) and,
    if already worked out, its ``return_figures``. Its package's own figures are kept on the
    package's row (``PackageState.figures``), not in the facts. Every figure is filed under the
    package's classification (``counting_of``)."""
    facts: Counter = Counter()
    counting = counting_of(package, ret)
    if counting is not None:
        add_figures(facts, counting, return_figures(ret) if figures is None else figures)
        add_counted(facts, counting)
    return facts


def figure_changes(before: Counter, after: Counter) -> dict[str, float]:
    """``after - before``, the figures that differ only (negative where one fell)."""
    changes: dict[str, float] = {
        metric: value - before.get(metric, 0) for metric, value in after.items() if value != before.get(metric)
    }
    changes.update({metric: -value for metric, value in before.items() if metric not in after})
    return changes


def package_contribution(package: PackageRow) -> Counter:
    facts: Counter = Counter()
    if package.issued_at is not None and package.withdrawn_at is None:  # described, not withdrawn
        marking = package.classification or UNKNOWN_CLASSIFICATION
        for key in month_keys(month_of(package.issued_at), package.threat_area, None)[1::2]:
            facts[("month", key, "packages", marking)] += 1
    return facts


def _rows_of(session: Session, query) -> Iterator[StateRow]:
    # On the session's connection: a Core statement needs none of the ORM's execution (10% of a
    # bulk load's reads went to Session.execute's ORM compile state).
    if in_write_pipeline(session):  # its answer would not be there yet (shared.db.pipelined_writes)
        raise RuntimeError("a read inside the projector's write pipeline: read before Projector.flush writes")
    for row in session.connection().execute(query):
        yield StateRow(**row._mapping)


def _blank(table: Table, **values) -> StateRow:
    """A new row: ``values``, and every other column its Python default (or None)."""
    return StateRow(**{column.name: value_or_default(values, column) for column in table.columns})


def lock_projection(session: Session) -> None:
    """Apply one batch at a time (PostgreSQL; SQLite has one writer anyway). Each batch reads the
    returns and packages it changes before writing them: two at once (one relay per source
    service) could both start from the same row and the second's write would undo the first's,
    and the facts would count both differences. The lock is the transaction's, per schema."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.metrics projection'))"))


class Projector:
    """Applies events to the read model; a batch writes each touched fact once."""

    def __init__(self, session: Session):
        self.session = session
        self.packages: dict[uuid.UUID, StateRow | None] = {}
        self.returns: dict[uuid.UUID, StateRow] = {}
        # Ids read in advance for the batch (``prefetch``): one not found does not exist yet.
        self.known_returns: set[uuid.UUID] = set()
        # Packages whose every return is in ``returns`` (indexed by package below).
        self.complete_packages: set[uuid.UUID] = set()
        self.returns_by_package: dict[uuid.UUID, dict[uuid.UUID, StateRow]] = {}
        # Each return and package the batch changes as it was counted before its first change:
        # where (``counting_of``), for which package, and what it added (``return_figures``). The
        # batch adds (what it counts after) - (this), once each, when it is written (``flush``).
        self.counted_before: dict[uuid.UUID, tuple[StateRow, Counting | None, uuid.UUID | None, Counter]] = {}
        self.package_counted_before: dict[uuid.UUID, tuple[StateRow, Counter]] = {}
        self.touched_packages: set[uuid.UUID] = set()
        self.timeline: dict[uuid.UUID, dict] = {}  # rows for the package timelines, by event id
        # Returns and packages the batch creates (the rest it changes are updated by ``flush``).
        self.new_returns: list[StateRow] = []
        self.new_packages: list[StateRow] = []

    def prefetch(self, events: list[dict]) -> None:
        """Read every package and return the batch's events name, in a few queries, instead of
        one or two per event: what makes a batch cost little more than its writes."""
        return_ids: set[uuid.UUID] = set()
        package_ids: set[uuid.UUID] = set()
        issued: set[uuid.UUID] = set()
        for event in events:
            payload = event["payload"]
            for key in ("return_id", "dissemination_id"):
                if payload.get(key):
                    return_ids.add(id_of(payload[key]))
            return_ids.update(id_of(i) for i in payload.get("dissemination_ids") or ())
            if payload.get("package_id"):
                package_ids.add(id_of(payload["package_id"]))
            if event["type"] == "package.issued":
                issued.add(id_of(payload["package_id"]))
                return_ids.update(id_of(d["dissemination_id"]) for d in payload["disseminations"])
        self._read_packages(package_ids)
        for condition in among(self.session, RETURNS.c.return_id, return_ids):
            self._cache_returns(select(RETURNS).where(condition))
        for condition in among(self.session, RETURNS.c.package_id, issued):
            self._cache_returns(select(RETURNS).where(condition))
        self.known_returns |= return_ids
        self.complete_packages |= issued

    def _cache_returns(self, query) -> None:
        for row in _rows_of(self.session, query):
            if row.return_id not in self.returns:
                self.returns[row.return_id] = row
                self._index(row)

    def _index(self, ret: StateRow) -> None:
        if ret.package_id is not None:
            self.returns_by_package.setdefault(ret.package_id, {})[ret.return_id] = ret

    # -- state, cached for the batch -------------------------------------------------------
    def package(self, package_id: uuid.UUID) -> StateRow | None:
        if package_id not in self.packages:
            query = select(PACKAGES).where(PACKAGES.c.package_id == package_id)
            self.packages[package_id] = next(_rows_of(self.session, query), None)
        return self.packages[package_id]

    def ret(self, return_id: uuid.UUID) -> StateRow:
        """The return's state, created blank when an event about it comes before its package."""
        if return_id not in self.returns:
            found = None
            if return_id not in self.known_returns:
                found = next(_rows_of(self.session, select(RETURNS).where(RETURNS.c.return_id == return_id)), None)
            if found is None:
                found = _blank(RETURNS, return_id=return_id)
                self.new_returns.append(found)
            self.returns[return_id] = found
            self._index(found)
        return self.returns[return_id]

    def returns_of(self, package_id: uuid.UUID) -> list[StateRow]:
        if package_id not in self.complete_packages:
            self._cache_returns(select(RETURNS).where(RETURNS.c.package_id == package_id))
            self.complete_packages.add(package_id)
        return list(self.returns_by_package.get(package_id, {}).values())

    def before_change(self, ret: StateRow) -> None:
        """Keep where the return is counted now and what it counts, if the batch has not changed
        it yet. Called before any change to the return, or to its package's description."""
        if ret.return_id not in self.counted_before:
            package = self.package(ret.package_id) if ret.package_id else None
            self.counted_before[ret.return_id] = (ret, counting_of(package, ret), ret.package_id, return_figures(ret))

    def before_package_change(self, package: StateRow) -> None:
        if package.package_id not in self.package_counted_before:
            self.package_counted_before[package.package_id] = (package, package_contribution(package))

    def change_return(self, ret: StateRow, change) -> None:
        self.before_change(ret)
        change(ret)
        self._index(ret)
        if ret.package_id:
            self.touched_packages.add(ret.package_id)

    def differences(self) -> tuple[Counter, dict[uuid.UUID, Counter]]:
        """What the batch's changes add to the facts, and to each package's own figures: each
        changed return's and package's contribution now, less what it was before the batch's
        first change. A return still counted where it was (most: a batch changes a figure or
        two of a return) adds only its figures' changes; one counted elsewhere now (its package
        described, withdrawn, its first final return) is taken out of where it was and added where
        it is."""
        deltas: Counter = Counter()
        own: dict[uuid.UUID, Counter] = {}
        for ret, counting_before, package_before, figures_before in self.counted_before.values():
            figures = return_figures(ret)
            counting = counting_of(self.package(ret.package_id) if ret.package_id else None, ret)
            changes = figure_changes(figures_before, figures)
            if counting == counting_before:
                if counting is not None and changes:
                    add_figures(deltas, counting, changes)
            else:
                if counting is not None:
                    add_figures(deltas, counting, figures)
                    add_counted(deltas, counting)
                if counting_before is not None:
                    add_figures(deltas, counting_before, figures_before, -1)
                    add_counted(deltas, counting_before, -1)
            if ret.package_id == package_before:
                if ret.package_id is not None and changes:
                    own.setdefault(ret.package_id, Counter()).update(changes)
            else:
                if ret.package_id is not None:
                    own.setdefault(ret.package_id, Counter()).update(figures)
                if package_before is not None:
                    own.setdefault(package_before, Counter()).subtract(figures_before)
        for package, before in self.package_counted_before.values():
            deltas.update(package_contribution(package))
            deltas.subtract(before)
        self.counted_before.clear()
        self.package_counted_before.clear()
        return deltas, own

    # -- events ------------------------------------------------------------------------------
    def apply(self, event: dict) -> None:
        handler = PROJECTIONS.get(event["type"])
        if handler is not None:  # an event type the read model does not count
            handler(self, event["payload"])
            row = timeline_row(event)
            if row is not None:
                self.timeline[row["event_id"]] = row

    def on_organisation_updated(self, payload: dict) -> None:
        organisation = self.session.get(Organisation, payload["code"]) or Organisation(code=payload["code"])
        organisation.name, organisation.kind, organisation.region = (
            payload["name"],
            payload.get("kind"),
            payload.get("region"),
        )
        self.session.add(organisation)

    def on_package_issued(self, payload: dict) -> None:
        package_id = id_of(payload["package_id"])
        for ret in self.returns_of(package_id):  # what each counts depends on the package's description
            self.before_change(ret)
        package = self.package(package_id) or self.new_package(package_id)
        self.before_package_change(package)
        for name in (
            "reference",
            "title",
            "threat_area",
            "classification",
            "source_evaluation",
            "intelligence_assessment",
            "handling_code",
        ):
            setattr(package, name, payload[name])
        package.issued_at = parse_time(payload["issued_at"])
        package.due_at = parse_time(payload.get("outcome_due_at"))
        for dissemination in payload["disseminations"]:
            ret = self.ret(id_of(dissemination["dissemination_id"]))

            def describe(r, d=dissemination):
                r.package_id = package_id
                r.organisation = d["organisation"]
                r.due_at = r.due_at or parse_time(d["due_at"])
                r.onward_from = r.onward_from or (id_of(d["onward_from"]) if d.get("onward_from") else None)

            self.change_return(ret, describe)
        self.touched_packages.add(package_id)

    def new_package(self, package_id: uuid.UUID) -> StateRow:
        package = _blank(PACKAGES, package_id=package_id)
        self.new_packages.append(package)
        self.packages[package_id] = package
        return package

    def on_package_withdrawn(self, payload: dict) -> None:
        package_id = id_of(payload["package_id"])
        package = self.package(package_id) or self.new_package(package_id)
        if package.withdrawn_at is None:
            self.before_package_change(package)
            package.withdrawn_at = parse_time(payload["withdrawn_at"])
        for return_id in payload.get("dissemination_ids", []):
            self.change_return(self.ret(id_of(return_id)), lambda r: setattr(r, "withdrawn", True))
        self.touched_packages.add(package_id)

    def on_dissemination_withdrawn(self, payload: dict) -> None:
        """One onward dissemination withdrawn (its pass-on amended away): its return and its
        results stop counting."""
        self.change_return(self.ret(id_of(payload["dissemination_id"])), lambda r: setattr(r, "withdrawn", True))

    def on_dissemination_delivered(self, payload: dict) -> None:
        def delivered(r):
            r.delivered_at = min(filter(None, (r.delivered_at, parse_time(payload["delivered_at"]))))

        self.change_return(self.ret(id_of(payload["dissemination_id"])), delivered)

    def on_dissemination_delivery_failed(self, payload: dict) -> None:
        self.change_return(self.ret(id_of(payload["dissemination_id"])), lambda r: setattr(r, "delivery_failed", True))

    def on_dissemination_acknowledged(self, payload: dict) -> None:
        def acknowledged(r):
            moment = parse_time(payload["acknowledged_at"])
            r.acknowledged_at = r.acknowledged_at or moment
            r.delivered_at = r.delivered_at or moment  # seen in the inbox counts as delivered

        self.change_return(self.ret(id_of(payload["dissemination_id"])), acknowledged)

    def on_outcome_filed(self, payload: dict) -> None:
        ret = self.ret(id_of(payload["return_id"]))
        version = payload["version"]

        def filed(r):
            filed_at = parse_time(payload["filed_at"])
            r.first_returned_at = min(filter(None, (r.first_returned_at, filed_at)))
            if payload["status"] == "final" and (r.final_returned_at is None or filed_at < r.final_returned_at):
                r.final_returned_at = filed_at
                r.final_on_time = bool(payload.get("on_time"))
            if version > r.version:  # an older amendment arriving late changes nothing current
                r.version = version
                r.outcome_status = payload["status"]
                r.outcome = payload["outcome"]
            r.package_id = r.package_id or id_of(payload["package_id"])
            r.organisation = r.organisation or payload["organisation"]
            if payload.get("onward_from"):
                r.onward_from = r.onward_from or id_of(payload["onward_from"])
            r.due_at = r.due_at or parse_time(payload.get("due_at"))

        self.change_return(ret, filed)

    def on_return_overdue(self, payload: dict) -> None:
        self.change_return(self.ret(id_of(payload["return_id"])), lambda r: setattr(r, "overdue", True))

    def on_return_extended(self, payload: dict) -> None:
        def extended(r):
            r.due_at = parse_time(payload["due_at"])
            r.overdue = False

        self.change_return(self.ret(id_of(payload["return_id"])), extended)

    def on_chase_sent(self, payload: dict) -> None:
        self.change_return(
            self.ret(id_of(payload["return_id"])), lambda r: setattr(r, "chases_sent", r.chases_sent + 1)
        )

    # -- writing ----------------------------------------------------------------------------
    def flush(self, with_writes: Callable[[], None] | None = None) -> None:
        """Write what the batch changed: its new returns and packages inserted, the rest it
        changed updated, one statement each; the facts' differences; the timeline's rows.
        ``with_writes``: the caller's own writes for the batch (the inbox's rows), sent first."""
        self.session.flush()  # organisations (through the ORM: a few, seldom)
        self._read_packages(
            self.touched_packages
            | {ret.package_id for ret, *_ in self.counted_before.values() if ret.package_id is not None}
            | {before for _, _, before, _ in self.counted_before.values() if before is not None}
        )
        # Every read done: the writes go out without waiting on each other, and PostgreSQL runs
        # them while the figures are worked out (the caller's, the timeline's and the returns'
        # while the differences are, the facts' while the packages' are).
        with pipelined_writes(self.session):
            if with_writes is not None:
                with_writes()
            self._write()

    def _read_packages(self, package_ids: set[uuid.UUID]) -> None:
        missing = [package_id for package_id in package_ids if package_id not in self.packages]
        for condition in among(self.session, PACKAGES.c.package_id, missing):
            for package in _rows_of(self.session, select(PACKAGES).where(condition)):
                self.packages[package.package_id] = package
        self.packages.update({package_id: None for package_id in missing if package_id not in self.packages})

    def _write(self) -> None:
        # What needs nothing worked out goes first, so PostgreSQL is kept busy while Python works.
        write_timeline(self.session, list(self.timeline.values()))
        self.timeline.clear()
        new_returns = {ret.return_id for ret in self.new_returns}
        changed = sorted(
            (ret for ret, *_ in self.counted_before.values() if ret.return_id not in new_returns),
            key=attrgetter("return_id"),
        )
        insert_rows(self.session, ReturnState, [vars(ret) for ret in self.new_returns])
        update_rows(self.session, ReturnState, [vars(ret) for ret in changed], key="return_id")
        self.new_returns.clear()
        deltas, own = self.differences()
        write_facts(self.session, {k: v for k, v in deltas.items() if v})
        # Each package the batch touched: its own figures, its verdict. A package whose returns
        # are heard of before it was issued gets its row now (undescribed, shown to no one), so
        # what they add is kept until it is.
        written: list[StateRow] = []
        for package_id in sorted(self.touched_packages | {i for i, figures in own.items() if any(figures.values())}):
            package = self.package(package_id) or self.new_package(package_id)
            figures = Counter(package.figures or {})
            figures.update(own.get(package_id, Counter()))
            refresh_verdict(self.session, package, figures)
            package.figures = own_figures(figures)
            written.append(package)
        new_packages = {package.package_id for package in self.new_packages}
        insert_rows(self.session, PackageState, [vars(package) for package in self.new_packages])
        update_rows(
            self.session,
            PackageState,
            [vars(package) for package in written if package.package_id not in new_packages],
            key="package_id",
        )
        self.new_packages.clear()
        self.touched_packages.clear()


# Every event type the read model counts, and what each does to it: the metrics service
# subscribes to exactly these (EVENT_HANDLERS, below).
PROJECTIONS: dict[str, Callable[[Projector, dict], None]] = {
    "organisation.updated": Projector.on_organisation_updated,
    "package.issued": Projector.on_package_issued,
    "package.withdrawn": Projector.on_package_withdrawn,
    "dissemination.withdrawn": Projector.on_dissemination_withdrawn,
    "dissemination.delivered": Projector.on_dissemination_delivered,
    "dissemination.delivery_failed": Projector.on_dissemination_delivery_failed,
    "dissemination.acknowledged": Projector.on_dissemination_acknowledged,
    "outcome.filed": Projector.on_outcome_filed,
    "return.overdue": Projector.on_return_overdue,
    "return.extended": Projector.on_return_extended,
    "chase.sent": Projector.on_chase_sent,
}


def write_facts(session: Session, deltas: dict[FactKey, float], hours_apart: bool = True) -> None:
    """Add each delta to its fact row, in a fixed order (two writers never deadlock on the same
    rows). The hours histograms (scope ``org_hours``) go to their own table (``HoursToReturn``),
    unless ``hours_apart`` is False (migrations 0002 and 0005: the facts kept them until 0010).
    On PostgreSQL, one upsert statement per table takes every row at once as one JSON document
    (``shared.db.rows_from_json``): one statement to plan and run however many rows, where one
    per row cost a fifth of a bulk load. On SQLite, the upsert is sent once per row (executemany)."""
    facts: list[dict] = []
    hours: list[dict] = []
    for (scope, key, metric, classification), value in sorted(deltas.items()):
        if scope == HOURS_SCOPE and hours_apart:
            hours.append(
                {"organisation": key, "classification": classification, "hours": int(metric), "value": float(value)}
            )
        else:
            facts.append(
                {"scope": scope, "key": key, "metric": metric, "classification": classification, "value": float(value)}
            )
    _add_values(session, FACTS, facts)
    _add_values(session, HOURS, hours)


def _add_values(session: Session, table: Table, rows: list[dict]) -> None:
    """Add each row's ``value`` to the row with its primary key in ``table``, or insert it."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        execute_write(session, _adding_from_json(table), {"rows": rows_as_json(rows)})
        return
    session.connection().execute(_adding(table, sqlite_insert(table)), rows)


FACTS = cast(Table, Fact.__table__)
HOURS = cast(Table, HoursToReturn.__table__)
HOURS_SCOPE = "org_hours"  # the scope the projection files the hours histograms under (``add_counted``)
ADDED_COLUMNS = {
    "facts": ("scope", "key", "metric", "classification", "value"),
    "hours_to_return": ("organisation", "classification", "hours", "value"),
}
RETURNS = cast(Table, ReturnState.__table__)
PACKAGES = cast(Table, PackageState.__table__)


def _adding(table: Table, statement):
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns), set_={"value": table.c.value + statement.excluded.value}
    )


@cache
def _adding_from_json(table: Table):
    """INSERT INTO table SELECT ... FROM jsonb_to_recordset(:rows) ON CONFLICT (its primary key)
    DO UPDATE SET value = table.value + excluded.value (PostgreSQL)."""
    # The columns named, not the model's: migrations 0002 and 0005 write facts through here, and
    # must not write a column the facts gain later.
    names = ADDED_COLUMNS[table.name]
    rows = rows_from_json(table, names)
    return _adding(table, pg_insert(table).from_select(list(names), select(*rows.c)))


def facts_of_packages(session: Session, package_ids: list[uuid.UUID]) -> dict[uuid.UUID, Counter]:
    """Each package's own facts as migrations 0002 to 0007 kept them (scope ``package``): read by
    those migrations only. Since 0008 they are kept on the package's row alone (``figures``)."""
    found: dict[str, Counter] = {str(package_id): Counter() for package_id in package_ids}
    for chunk in chunks(list(found)):
        rows = session.execute(
            select(Fact.key, Fact.metric, Fact.value).where(
                Fact.scope == "package", Fact.key.in_(chunk), Fact.classification == PACKAGE_CLASSIFICATION
            )
        )
        for key, metric, value in rows:
            found[key][metric] += value  # type: ignore[assignment]  # amounts may be fractional
    return {package_id: found[str(package_id)] for package_id in package_ids}


def _moment(payload: dict, name: str, event: dict) -> datetime:
    return parse_time(payload.get(name)) or parse_time(str(event["occurred_at"]))  # type: ignore[return-value]


def timeline_row(event: dict) -> dict | None:
    """The package timeline's row for an event (``TimelineEntry``), from the event alone: no
    read of the model, so it costs one row in the batch's insert. None for an event that is no
    part of a package's story (or one without an id, which could not be kept once)."""
    payload, kind = event["payload"], event["type"]
    if not event.get("id") or not payload.get("package_id"):
        return None
    row: dict = {
        "event_id": id_of(str(event["id"])),
        "package_id": id_of(payload["package_id"]),
        "return_id": None,
        "organisation": payload.get("organisation"),
        "detail": {},
    }
    return_id = payload.get("return_id") or payload.get("dissemination_id")
    if return_id:
        row["return_id"] = id_of(return_id)
    if kind == "package.issued":
        disseminations = payload.get("disseminations", [])
        onward = [d for d in disseminations if d.get("onward_from")]
        listed = [
            {
                "return_id": d["dissemination_id"],
                "organisation": d["organisation"],
                "due_at": d.get("due_at"),
                "onward_from": d.get("onward_from"),
            }
            for d in disseminations
        ]
        if onward and len(onward) == len(disseminations):  # a recipient passed it on
            first = onward[0]
            row.update(
                kind="passed_on",
                occurred_at=parse_time(first.get("issued_at")) or _moment(payload, "issued_at", event),
                return_id=id_of(first["dissemination_id"]),
                organisation=first["organisation"],
                detail={"disseminations": listed},
            )
        else:
            row.update(
                kind="issued",
                occurred_at=_moment(payload, "issued_at", event),
                detail={
                    "drafted_at": payload.get("drafted_at"),
                    "issued_by": payload.get("issued_by"),
                    "due_at": payload.get("outcome_due_at"),
                    "disseminations": listed,
                },
            )
    elif kind == "package.withdrawn":
        row.update(kind="withdrawn", occurred_at=_moment(payload, "withdrawn_at", event))
        row["detail"] = {"reason": payload.get("reason"), "by": payload.get("withdrawn_by")}
    elif kind == "dissemination.withdrawn":
        row.update(kind="dissemination_withdrawn", occurred_at=_moment(payload, "withdrawn_at", event))
        row["detail"] = {"reason": payload.get("reason")}
    elif kind == "dissemination.delivered":
        row.update(kind="delivered", occurred_at=_moment(payload, "delivered_at", event))
        row["detail"] = {"channel": payload.get("channel")}
    elif kind == "dissemination.delivery_failed":
        row.update(kind="delivery_failed", occurred_at=_moment(payload, "failed_at", event))
        row["detail"] = {"attempts": payload.get("attempts")}
    elif kind == "dissemination.acknowledged":
        row.update(kind="acknowledged", occurred_at=_moment(payload, "acknowledged_at", event))
    elif kind == "outcome.filed":
        row.update(kind="returned", occurred_at=_moment(payload, "filed_at", event))
        row["detail"] = {
            name: payload.get(name)
            for name in ("version", "status", "amendment", "on_time", "filed_via", "onward_from", "outcome")
        }
    elif kind == "return.overdue":
        row.update(kind="overdue", occurred_at=_moment(payload, "overdue_at", event))
        row["detail"] = {"due_at": payload.get("due_at")}
    elif kind == "return.extended":
        row.update(kind="extended", occurred_at=_moment(payload, "at", event))
        row["detail"] = {name: payload.get(name) for name in ("previous_due_at", "due_at", "reason")}
    elif kind == "chase.sent":
        row.update(kind="chased", occurred_at=_moment(payload, "sent_at", event))
        row["detail"] = {name: payload.get(name) for name in ("step", "notify", "channel")}
    else:
        return None
    return row


def write_timeline(session: Session, rows: list[dict]) -> None:
    """Insert the batch's timeline rows in one statement (``shared.db.insert_rows``); a row already
    there (the same event applied again) is left as it is."""
    insert_rows(session, TimelineEntry, rows, skip_existing=("event_id",))


def own_figures(facts: Counter) -> dict[str, float]:
    """A package's own facts as kept on its row (``PackageState.figures``): the ones not zero."""
    return {metric: value for metric, value in sorted(facts.items()) if value}


def package_facts(session: Session, package_id: uuid.UUID) -> Counter:
    """One package's own facts as migrations 0002 to 0007 kept them (see ``facts_of_packages``)."""
    rows = session.execute(
        select(Fact.metric, Fact.value).where(
            Fact.scope == "package", Fact.key == str(package_id), Fact.classification == PACKAGE_CLASSIFICATION
        )
    ).all()
    return Counter({metric: value for metric, value in rows})


def counted(number: float, singular: str, plural: str | None = None) -> str:
    """'1 arrest', '5 arrests', '2 people safeguarded'."""
    number = int(number)
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def refresh_verdict(session: Session, package: PackageRow, figures: Counter | None = None) -> None:
    """One plain verdict per package, with its reason, for leaders to sort by (from its own
    figures; read here from the facts migrations 0002 to 0007 kept, unless given)."""
    if figures is None:
        figures = package_facts(session, package.package_id)
    recipients = int(figures["recipients"])
    package.recipients = recipients
    package.final_returns = int(figures["final"])
    package.actioned_returns = int(figures["final_actioned"])  # the actioned rate's numerator
    package.arrests = int(figures["result:arrests"])
    package.onward_arrests = int(figures["result:arrests:onward"])
    package.onward_recipients = int(figures["onward"])
    if package.withdrawn_at is not None:
        package.verdict, package.verdict_reason = "no_action", "Withdrawn by the centre."
        return
    if figures["actioned"]:
        results = results_words(figures)
        package.verdict = "actioned"
        package.verdict_reason = f"{int(figures['actioned'])} of {counted(recipients, 'recipient')} acted on it" + (
            f": {results}." if results else "."
        )
        if figures["overdue"]:
            package.verdict_reason += f" {counted(figures['overdue'], 'return')} overdue."
    elif figures["overdue"]:
        package.verdict = "overdue"
        package.verdict_reason = (
            f"{int(figures['overdue'])} of {counted(recipients, 'return')} overdue; none reports action yet."
        )
    elif recipients and figures["final"] >= recipients:
        package.verdict = "no_action"
        package.verdict_reason = f"All {counted(recipients, 'recipient')} returned; none acted on it."
    else:
        package.verdict = "awaiting"
        package.verdict_reason = f"{int(figures['final'])} of {counted(recipients, 'final return')} in; not yet due."


# Columns added after the migration that calls ``facts_from_state`` (0002): it must not read them.
ONWARD_COLUMNS = (ReturnState.onward_from, PackageState.onward_arrests, PackageState.onward_recipients)
FIGURES_COLUMNS = (PackageState.figures,)  # added by 0007: 0002 and 0005 must not read it


def facts_from_state(
    session: Session, chunk: int = 20000, absent: tuple = (), package_scope: bool = False, hours_apart: bool = True
) -> int:
    """Empty ``facts`` (and ``hours_to_return``) and recompute them from the ``packages`` and
    ``returns`` tables (the sum the difference rule keeps). Returns the number of returns counted.

    ``absent``: model columns the tables do not have yet (a migration older than them): they
    are not read, and count as empty. ``package_scope``: each package's own figures written as
    facts too, as migrations 0002 to 0007 kept them (``facts_of_packages``). ``hours_apart``
    False: the hours histograms kept in the facts, as migrations 0002 to 0009 kept them."""
    session.execute(delete(Fact))
    if hours_apart:
        session.execute(delete(HoursToReturn))
    deltas: Counter = Counter()
    counted_returns = 0
    not_there = [defer(column, raiseload=True) for column in absent]
    rows = session.execute(
        select(ReturnState, PackageState)
        .outerjoin(PackageState, PackageState.package_id == ReturnState.package_id)
        .options(*not_there)
        .execution_options(yield_per=2000)
    )
    for ret, package in rows:
        for column in absent:
            if column.class_ is ReturnState:
                set_committed_value(ret, column.key, None)
        deltas.update(contribution(package, ret))
        if package_scope and ret.package_id is not None:
            for metric, value in return_figures(ret).items():
                deltas[("package", str(ret.package_id), metric, PACKAGE_CLASSIFICATION)] += value
        counted_returns += 1
        if counted_returns % chunk == 0:
            write_facts(session, {k: v for k, v in deltas.items() if v}, hours_apart)
            deltas.clear()
    package_options = [defer(column, raiseload=True) for column in absent if column.class_ is PackageState]
    for package in session.scalars(select(PackageState).options(*package_options).execution_options(yield_per=2000)):
        deltas.update(package_contribution(package))
    write_facts(session, {k: v for k, v in deltas.items() if v}, hours_apart)
    return counted_returns


def package_figures_from_state(session: Session) -> dict[uuid.UUID, Counter]:
    """Each package's own figures recomputed from its returns (what ``Projector.flush`` keeps on
    its row, ``PackageState.figures``), for every package id a return names."""
    # The columns ``return_figures`` reads, named: a migration runs this against the table as it
    # was then, which may not have a later column the model has.
    query = select(*(RETURNS.c[name] for name in RETURN_FIGURE_COLUMNS)).where(RETURNS.c.package_id.is_not(None))
    figures: dict[uuid.UUID, Counter] = {}
    for ret in _rows_of(session, query.execution_options(yield_per=2000)):
        figures.setdefault(ret.package_id, Counter()).update(return_figures(ret))
    return figures


RETURN_FIGURE_COLUMNS = (
    "package_id",
    "withdrawn",
    "onward_from",
    "acknowledged_at",
    "first_returned_at",
    "delivered_at",
    "delivery_failed",
    "version",
    "outcome_status",
    "final_returned_at",
    "final_on_time",
    "overdue",
    "chases_sent",
    "outcome",
)


def apply_events(session: Session, events: Iterable[dict], with_writes: Callable[[], None] | None = None) -> None:
    """Apply a batch of events (already de-duplicated) and write the figures once. Where batches
    may run at once, the caller has taken ``lock_projection`` before the inbox (the service's
    ``inbox_lock``; ``rebuilding.apply_batch``). ``with_writes``: the caller's own writes for the
    batch, made with the projection's (``Projector.flush``)."""
    events = list(events)
    projector = Projector(session)
    projector.prefetch(events)
    for event in events:
        projector.apply(event)
    projector.flush(with_writes)


def handle(session: Session, event: dict) -> None:
    """The inbox handler for one live event."""
    apply_events(session, [event])


EVENT_HANDLERS = {event_type: handle for event_type in PROJECTIONS}
