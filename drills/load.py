"""A steady, bounded load, and the ledger of what it did.

Each package goes to the four drill forces, each of which follows a plan (rotating with the
package, so every force meets every plan):

- ``interim_final``: acknowledges, files an interim return, then a final one;
- ``final``: acknowledges and files a final return;
- ``interim``: files an interim return only, and is chased up the whole ladder;
- ``silent``: files nothing, and is chased up the whole ladder.

Every POST carries an ``Idempotency-Key`` and is retried (bounded) with it on a connection
error or a 5xx, as a careful client does; the ledger counts a filing once it was answered 201.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from drills.system import DUE_AFTER_SECONDS, FORCES, System, Unavailable

PLANS = ("interim_final", "final", "interim", "silent")
FINISHING_PLANS = ("interim_final", "final")
# How long the load waits for the outcomes service to list a package's returns: seconds on an idle
# machine, minutes on one crowded with other work (the bound is for a system that never heals).
RETURNS_APPEAR_WITHIN = 240.0


@dataclass
class ReturnRecord:
    organisation: str
    plan: str
    id: str | None = None
    filings: list[dict] = field(default_factory=list)  # each answered 201, in order
    acknowledged: bool = False
    final_at: datetime | None = None

    @property
    def current(self) -> dict | None:
        return self.filings[-1] if self.filings else None


@dataclass
class PackageRecord:
    drill: str
    index: int
    id: str
    reference: str
    issued_at: datetime
    due_at: datetime
    returns: dict[str, ReturnRecord]


@dataclass
class Ledger:
    packages: list[PackageRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def of(self, drill: str) -> list[PackageRecord]:
        return [p for p in self.packages if p.drill == drill]


class Load:
    """Issues ``packages`` packages ``every`` seconds apart in a thread of its own, and files the
    returns of each as their plans say. ``join`` waits for it, bounded."""

    def __init__(self, system: System, ledger: Ledger, drill: str, packages: int, every: float):
        self.system = system
        self.ledger = ledger
        self.drill = drill
        self.count = packages
        self.every = every
        self.issued = 0
        self.filed = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name=f"load-{drill}", daemon=True)
        self.finished_at: float | None = None

    # --- running ---------------------------------------------------------------------------

    def start(self) -> Load:
        now = time.monotonic()
        for index in range(self.count):
            self._at(now + index * self.every, lambda index=index: self._issue(index))
        self._thread.start()
        return self

    def join(self, timeout: float = 400.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the {self.drill} load did not finish within {timeout:.0f} s")

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action))

    def _run(self) -> None:
        deadline = time.monotonic() + 360
        while self._queue and time.monotonic() < deadline:
            when, _, action = heapq.heappop(self._queue)
            time.sleep(max(0.0, when - time.monotonic()))
            try:
                action()
            except (Unavailable, AssertionError) as error:
                self.ledger.errors.append(f"{self.drill}: {error}")
        if self._queue:
            self.ledger.errors.append(f"{self.drill}: {len(self._queue)} load steps not done within 360 s")
        self.finished_at = time.monotonic()

    # --- the steps -------------------------------------------------------------------------

    def _issue(self, index: int) -> None:
        due = datetime.now(UTC) + timedelta(seconds=DUE_AFTER_SECONDS)
        package = issue_package(self.system, f"Drill {self.drill} package {index}", list(FORCES), due)
        record = PackageRecord(
            drill=self.drill,
            index=len(self.ledger.packages),
            id=package["id"],
            reference=package["reference"],
            issued_at=datetime.now(UTC),
            due_at=due,
            returns={
                force: ReturnRecord(force, PLANS[(index + position) % len(PLANS)])
                for position, force in enumerate(FORCES)
            },
        )
        self.ledger.packages.append(record)
        self.issued += 1
        started = time.monotonic()
        self._at(started + 0.5, lambda: self._find_returns(record, started))

    def _find_returns(self, record: PackageRecord, started: float) -> None:
        rows = self.system.api.call(
            "GET", "outcomes", f"/api/v1/returns?package={record.id}", self.system.tokens["issuer"]
        ).json()
        if len(rows) < len(record.returns):
            if time.monotonic() - started > RETURNS_APPEAR_WITHIN:
                raise AssertionError(f"{record.reference}: returns not listed within {RETURNS_APPEAR_WITHIN:.0f} s")
            self._at(time.monotonic() + 1.0, lambda: self._find_returns(record, started))
            return
        now = time.monotonic()
        for row in rows:
            ret = record.returns[row["organisation"]]
            ret.id = row["id"]
            if ret.plan in FINISHING_PLANS:
                self._at(now + 0.2, lambda ret=ret: self._acknowledge(ret))
            if ret.plan == "interim_final":
                self._at(now + 0.5, lambda ret=ret: self._file(ret, "interim", arrests=1))
                self._at(now + 3.0, lambda ret=ret, n=record.index: self._file(ret, "final", arrests=2 + n % 3))
            elif ret.plan == "final":
                self._at(now + 1.0, lambda ret=ret, n=record.index: self._file(ret, "final", arrests=3 + n % 2))
            elif ret.plan == "interim":
                self._at(now + 0.5, lambda ret=ret: self._file(ret, "interim", arrests=1))

    def _acknowledge(self, ret: ReturnRecord) -> None:
        self.system.api.call(
            "POST",
            "dissemination",
            f"/api/v1/disseminations/{ret.id}/acknowledge",
            self.system.tokens[ret.organisation],
            idempotency_key=_key(),
        )
        ret.acknowledged = True

    def _file(self, ret: ReturnRecord, status: str, arrests: int) -> None:
        body = {
            "status": status,
            "actions": ["enforcement"],
            "priority": "high",
            "tasking_forum": f"{ret.organisation} tasking",
            "results": {"arrests": arrests},
            "attribution": "direct",
            "strands": ["pursue"],
            "intelligence_feedback": {"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"},
        }
        self.system.api.call(
            "POST",
            "outcomes",
            f"/api/v1/returns/{ret.id}/outcomes",
            self.system.tokens[ret.organisation],
            json=body,
            idempotency_key=_key(),
        )
        ret.filings.append({"status": status, "arrests": arrests})
        ret.acknowledged = True  # filing counts as acknowledgement
        if status == "final" and ret.final_at is None:
            ret.final_at = datetime.now(UTC)
        self.filed += 1


def issue_package(system: System, title: str, recipients: list[str], due_at: datetime) -> dict:
    """Draft a county-lines package to ``recipients`` as the issuer and issue it; the drafted
    package as the API answered it (its id and reference). The drills' load and ``make bench``
    issue the same kind of package."""
    api, issuer = system.api, system.tokens["issuer"]
    body = {
        "title": title,
        "summary": "A line from Liverpool into Wigan; runners aged 14-16.",
        "threat_area": "county_lines",
        "classification": "OFFICIAL",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "recipients": recipients,
        "outcome_due_at": due_at.isoformat(),
    }
    package = api.call("POST", "dissemination", "/api/v1/packages", issuer, json=body, idempotency_key=_key()).json()
    api.call("POST", "dissemination", f"/api/v1/packages/{package['id']}/issue", issuer, idempotency_key=_key())
    return package


def _key() -> str:
    return str(uuid.uuid4())
