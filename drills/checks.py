"""Nothing lost, nothing doubled: the counts of one drill's packages across the three services,
the notifications the forces received, and the event outboxes and inboxes.

``Counts.take`` reads them all (the services' tables, the metrics API, the webhook receiver
and the mail sink); ``problems`` says what does not add up. A drill waits, bounded, until
nothing is wrong, then prints ``table`` and asserts that nothing is.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drills.load import Ledger, PackageRecord
from drills.receiver import wait_until
from drills.system import LADDER, SERVICES, System

SENT = ("sent", "sent_fallback")
LADDER_NAMES = [step["name"] for step in LADDER]
# The last step for each audience is always sent; an earlier one may be superseded when two
# fall due at once (a sweep came late), which the chase log records as skipped.
LAST_OF_AUDIENCE = {step["notify"]: step["name"] for step in LADDER}
# Which subscriber gets which service's events (each service's declaration).
SUBSCRIPTIONS = {"dissemination": ("outcomes", "metrics"), "outcomes": ("dissemination", "metrics")}

# A notification's Message-ID is made from its id, the same on every try (shared.notify).
DELIVERY_MESSAGE_ID = re.compile(r"<deliver_([0-9a-f-]{36})@")
CHASE_MESSAGE_ID = re.compile(r"<chase_([0-9a-f-]{36})_(\w+)@")


def uid(value: Any) -> str:
    """One spelling of a UUID whether it came from PostgreSQL, SQLite or JSON."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def aware(value: datetime | str | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Counts:
    """Everything one drill's packages left in the three services and the forces' inboxes."""

    packages: list[PackageRecord]
    disseminations: dict[str, Any] = field(default_factory=dict)
    expected_returns: dict[str, Any] = field(default_factory=dict)
    versions: Counter = field(default_factory=Counter)
    current_arrests: dict[str, int] = field(default_factory=dict)
    chases: dict[str, list[Any]] = field(default_factory=dict)
    metrics_returns: dict[str, Any] = field(default_factory=dict)
    metrics_packages: dict[str, dict] = field(default_factory=dict)
    notices: Counter = field(default_factory=Counter)  # (kind, id[, step]) -> copies received
    email_copies: Counter = field(default_factory=Counter)
    webhook_copies: Counter = field(default_factory=Counter)
    outbox: dict[str, Counter] = field(default_factory=dict)  # service -> status -> deliveries
    events: dict[str, int] = field(default_factory=dict)  # service -> events emitted
    inbox: dict[tuple[str, str], int] = field(default_factory=dict)  # (subscriber, source) -> applied
    refused_webhooks: int = 0  # the forces' receiver could not verify them

    @classmethod
    def take(cls, system: System, ledger: Ledger, drill: str, with_api: bool = False) -> Counts:
        counts = cls(ledger.of(drill))
        returns = {ret.id for p in counts.packages for ret in p.returns.values() if ret.id}
        packages = {p.id for p in counts.packages}
        store = system.store
        for row in store.rows(
            "dissemination",
            "SELECT id, package_id, delivery_status, delivery_channel, acknowledged_at, returned_at "
            "FROM {disseminations}",
        ):
            if uid(row.package_id) in packages:
                counts.disseminations[uid(row.id)] = row
        for row in store.rows(
            "outcomes", "SELECT id, acknowledged_at, final_returned_at, overdue_emitted_at FROM {expected_returns}"
        ):
            if uid(row.id) in returns:
                counts.expected_returns[uid(row.id)] = row
        latest: dict[str, tuple[int, int]] = {}
        for row in store.rows("outcomes", "SELECT return_id, version, results FROM {outcome_returns}"):
            key = uid(row.return_id)
            if key in returns:
                counts.versions[key] += 1
                results = row.results if isinstance(row.results, dict) else json.loads(row.results)
                if key not in latest or row.version > latest[key][0]:
                    latest[key] = (row.version, int(results.get("arrests") or 0))
        counts.current_arrests = {key: arrests for key, (_, arrests) in latest.items()}
        for row in store.rows("outcomes", "SELECT return_id, step, notify, result, error, planned_at FROM {chase_log}"):
            if uid(row.return_id) in returns:
                counts.chases.setdefault(uid(row.return_id), []).append(row)
        for row in store.rows(
            "metrics",
            "SELECT return_id, version, chases_sent, final_returned_at, overdue, delivered_at, acknowledged_at "
            "FROM {returns}",
        ):
            if uid(row.return_id) in returns:
                counts.metrics_returns[uid(row.return_id)] = row
        for service in SERVICES:
            counts.outbox[service] = Counter(
                dict(store.rows(service, "SELECT status, count(*) FROM {outbox_deliveries} GROUP BY status"))
            )
            counts.events[service] = int(store.scalar(service, "SELECT count(*) FROM {outbox_events}") or 0)
            for source, applied in store.rows(service, "SELECT source, count(*) FROM {inbox_events} GROUP BY source"):
                counts.inbox[(service, source)] = int(applied)
        counts._read_notifications(system)
        if with_api:
            for package in counts.packages:
                answer = system.api.call(
                    "GET", "metrics", f"/api/v1/metrics/packages/{package.id}", system.tokens["leader"], ok=(200, 404)
                )
                counts.metrics_packages[package.id] = answer.json() if answer.status_code == 200 else {}
        return counts

    def _read_notifications(self, system: System) -> None:
        expected_ids = self.expected_returns_or_disseminations
        messages, copies = system.receiver.snapshot()
        self.refused_webhooks = system.receiver.refused
        for message_id, payload in messages.items():
            key = notice_key(payload)
            if key and key[1] in self.expected_returns_or_disseminations:
                self.notices[key] += copies[message_id]
                self.webhook_copies[key] += copies[message_id]
        for mail in system.mail():
            subject = str(mail["Subject"])
            if "WITHDRAWN" in subject:
                continue
            message_id = str(mail["Message-ID"])
            delivery = DELIVERY_MESSAGE_ID.search(message_id)
            chase = CHASE_MESSAGE_ID.search(message_id)
            key = None
            if delivery and delivery.group(1) in expected_ids:
                key = ("deliver", delivery.group(1))
            elif chase and chase.group(1) in expected_ids:
                key = ("chase", chase.group(1), chase.group(2))
            if key:
                self.notices[key] += 1
                self.email_copies[key] += 1

    @property
    def expected_returns_or_disseminations(self) -> set[str]:
        return {ret.id for p in self.packages for ret in p.returns.values() if ret.id}

    # --- what should be ----------------------------------------------------------------------

    def expected_notices(self) -> set[tuple]:
        ids = {ret.id for p in self.packages for ret in p.returns.values() if ret.id}
        wanted: set[tuple] = {("deliver", return_id) for return_id in ids} - self.optional_notices()
        for return_id, rows in self.chases.items():
            wanted |= {("chase", return_id, row.step) for row in rows if row.result in SENT}
        return wanted

    def optional_notices(self) -> set[tuple]:
        """A recipient that read its inbox before its delivery notice was recorded was delivered
        to there (delivery_channel "inbox"): its notice may have gone (a worker killed after
        sending, before recording) or not."""
        return {("deliver", key) for key, row in self.disseminations.items() if row.delivery_channel == "inbox"}

    def problems(self, now: datetime) -> list[str]:
        """Everything that does not add up; empty when nothing is lost or doubled."""
        found: list[str] = []
        for package in self.packages:
            for org, ret in package.returns.items():
                name = f"{package.reference}/{org}"
                if ret.id is None:
                    found.append(f"{name}: never listed by the outcomes service")
                    continue
                found += self._return_problems(name, package, ret, now)
        found += self._notice_problems()
        found += self._event_problems()
        if self.metrics_packages:
            found += self._figure_problems()
        return found

    def _return_problems(self, name: str, package: PackageRecord, ret, now: datetime) -> list[str]:
        found = []
        row = self.disseminations.get(ret.id)
        if row is None or row.delivery_status != "delivered":
            found.append(f"{name}: delivery {row.delivery_status if row else 'missing'}")
        if row is not None and bool(row.acknowledged_at) != ret.acknowledged:
            found.append(f"{name}: dissemination acknowledged {bool(row.acknowledged_at)}, load {ret.acknowledged}")
        if row is not None and bool(row.returned_at) != bool(ret.final_at):
            found.append(f"{name}: dissemination returned_at {row.returned_at} but final filed {ret.final_at}")
        expected = self.expected_returns.get(ret.id)
        if expected is None:
            found.append(f"{name}: no expected return in outcomes")
        else:
            if bool(expected.final_returned_at) != bool(ret.final_at):
                found.append(f"{name}: outcomes final {expected.final_returned_at}, by the load {ret.final_at}")
            if bool(expected.acknowledged_at) != ret.acknowledged:
                found.append(f"{name}: outcomes acknowledged {bool(expected.acknowledged_at)}, load {ret.acknowledged}")
        if self.versions[ret.id] != len(ret.filings):
            found.append(f"{name}: {self.versions[ret.id]} filings stored, {len(ret.filings)} filed")
        metrics = self.metrics_returns.get(ret.id)
        sent = [row for row in self.chases.get(ret.id, []) if row.result in SENT]
        if metrics is None:
            found.append(f"{name}: not in the metrics read model")
        else:
            if metrics.version != len(ret.filings):
                found.append(f"{name}: metrics version {metrics.version}, {len(ret.filings)} filed")
            if metrics.chases_sent != len(sent):
                found.append(f"{name}: metrics counts {metrics.chases_sent} chases, {len(sent)} sent")
            if metrics.delivered_at is None:
                found.append(f"{name}: metrics has no delivery")
            if bool(metrics.final_returned_at) != bool(ret.final_at):
                found.append(f"{name}: metrics final {metrics.final_returned_at}, by the load {ret.final_at}")
        found += self._ladder_problems(name, package, ret, now)
        return found

    def _ladder_problems(self, name: str, package: PackageRecord, ret, now: datetime) -> list[str]:
        rows = self.chases.get(ret.id, [])
        found = []
        steps = Counter(row.step for row in rows)
        found += [f"{name}: chase step {step} logged {n} times" for step, n in steps.items() if n > 1]
        unfinished = [row for row in rows if row.result in ("pending", "failed")]
        found += [f"{name}: chase step {row.step} {row.result} ({row.error})" for row in unfinished]
        if ret.final_at is None:
            last_step_due = package.due_at.timestamp() + max(step["offset_seconds"] for step in LADDER)
            if now.timestamp() > last_step_due + 2:
                missing = [step for step in LADDER_NAMES if step not in steps]
                if missing:
                    found.append(f"{name}: chase steps never logged: {', '.join(missing)}")
            for row in rows:
                if row.step in LAST_OF_AUDIENCE.values() and row.result not in SENT + ("pending",):
                    found.append(f"{name}: last {row.notify} step {row.step} {row.result} ({row.error})")
                if row.result == "skipped" and "superseded" not in (row.error or ""):
                    found.append(f"{name}: chase step {row.step} skipped: {row.error}")
        else:
            late = [row.step for row in rows if row.result in SENT and aware(row.planned_at) > ret.final_at]
            if late:
                found.append(f"{name}: chased after its final return: {', '.join(late)}")
        return found

    def _notice_problems(self) -> list[str]:
        wanted = self.expected_notices()
        received = set(self.notices)
        found = [f"notification lost: {_name(key)}" for key in sorted(wanted - received)]
        if self.refused_webhooks:
            found.append(f"{self.refused_webhooks} webhooks refused by the force: signature not verified")
        unrecorded = received - wanted - self.optional_notices()
        found += [f"notification sent without a record of it: {_name(key)}" for key in sorted(unrecorded)]
        found += [f"e-mail sent {n} times: {_name(key)}" for key, n in sorted(self.email_copies.items()) if n > 1]
        both = [key for key in self.email_copies if key in self.webhook_copies]
        found += [f"sent by webhook and by e-mail: {_name(key)}" for key in sorted(both)]
        return found

    def _event_problems(self) -> list[str]:
        found = []
        for service, statuses in self.outbox.items():
            for status in ("pending", "dead"):
                if statuses.get(status):
                    found.append(f"{service} outbox: {statuses[status]} deliveries {status}")
        for source, subscribers in SUBSCRIPTIONS.items():
            for subscriber in subscribers:
                applied = self.inbox.get((subscriber, source), 0)
                if applied != self.events[source]:
                    found.append(f"{subscriber} applied {applied} of the {self.events[source]} events {source} emitted")
        return found

    def _figure_problems(self) -> list[str]:
        found = []
        for package in self.packages:
            figures = self.metrics_packages.get(package.id) or {}
            if not figures:
                found.append(f"{package.reference}: the metrics API does not know it")
                continue
            for label, got, want in self._package_figures(package, figures):
                if got != want:
                    found.append(f"{package.reference}: metrics {label} {got}, expected {want}")
        return found

    @staticmethod
    def _package_figures(package: PackageRecord, figures: dict) -> list[tuple[str, Any, Any]]:
        rets = list(package.returns.values())
        return [
            ("recipients", figures["reach"]["recipients"], len(rets)),
            ("delivered", figures["reach"]["delivered"], len(rets)),
            ("acknowledged", figures["reach"]["acknowledged"], sum(r.acknowledged for r in rets)),
            ("final", figures["compliance"]["final"], sum(bool(r.final_at) for r in rets)),
            (
                "interim",
                figures["compliance"]["interim"],
                sum(r.current is not None and r.current["status"] == "interim" for r in rets),
            ),
            ("overdue_now", figures["compliance"]["overdue_now"], sum(r.final_at is None for r in rets)),
            ("arrests", figures["results"]["totals"]["arrests"], sum(r.current["arrests"] for r in rets if r.current)),
        ]

    # --- the figures -------------------------------------------------------------------------

    def table(self) -> list[tuple[str, ...]]:
        """Rows: figure, expected (by the load), dissemination, outcomes, metrics, notifications."""
        rets = [ret for p in self.packages for ret in p.returns.values()]
        disseminations = list(self.disseminations.values())
        expected = list(self.expected_returns.values())
        read_model = list(self.metrics_returns.values())
        api = list(self.metrics_packages.values())
        chase_rows = [row for rows in self.chases.values() for row in rows]

        def count(values) -> str:
            return str(sum(bool(v) for v in values))

        def figure(section: str, name: str) -> str:
            return str(sum(f[section][name] for f in api)) if api and all(api) else "-"

        def results(result: str) -> str:
            return str(sum(row.result == result for row in chase_rows))

        notices = Counter(key[0] for key in self.notices)
        webhook_repeats = sum(n - 1 for n in self.webhook_copies.values() if n > 1)
        email_repeats = sum(n - 1 for n in self.email_copies.values() if n > 1)
        arrests = str(int(sum(f["results"]["totals"]["arrests"] for f in api))) if api and all(api) else "-"
        return [
            (
                "packages issued",
                str(len(self.packages)),
                str(len({uid(r.package_id) for r in disseminations})),
                "-",
                str(len(api)),
                "-",
            ),
            (
                "returns expected",
                str(len(rets)),
                str(len(disseminations)),
                str(len(expected)),
                figure("reach", "recipients"),
                "-",
            ),
            (
                "delivered",
                str(len(rets)),
                count(r.delivery_status == "delivered" for r in disseminations),
                "-",
                figure("reach", "delivered"),
                f"{notices['deliver']} distinct",
            ),
            (
                "acknowledged",
                count(r.acknowledged for r in rets),
                count(r.acknowledged_at for r in disseminations),
                count(r.acknowledged_at for r in expected),
                figure("reach", "acknowledged"),
                "-",
            ),
            (
                "filings (versions)",
                str(sum(len(r.filings) for r in rets)),
                "-",
                str(sum(self.versions.values())),
                str(sum(r.version for r in read_model)),
                "-",
            ),
            (
                "final returns",
                count(r.final_at for r in rets),
                count(r.returned_at for r in disseminations),
                count(r.final_returned_at for r in expected),
                figure("compliance", "final"),
                "-",
            ),
            (
                "arrests (current filings)",
                str(sum(r.current["arrests"] for r in rets if r.current)),
                "-",
                str(sum(self.current_arrests.values())),
                arrests,
                "-",
            ),
            (
                "overdue now",
                count(r.final_at is None for r in rets),
                "-",
                count(r.overdue_emitted_at and not r.final_returned_at for r in expected),
                figure("compliance", "overdue_now"),
                "-",
            ),
            (
                "chase steps sent",
                "-",
                "-",
                str(sum(row.result in SENT for row in chase_rows)),
                str(sum(r.chases_sent for r in read_model)),
                f"{notices['chase']} distinct",
            ),
            ("chase steps skipped / cancelled", "-", "-", f"{results('skipped')} / {results('cancelled')}", "-", "-"),
            ("chase steps pending / failed", "0 / 0", "-", f"{results('pending')} / {results('failed')}", "-", "-"),
            ("e-mails sent twice", "0", "-", "-", "-", str(email_repeats)),
            ("webhooks repeated (same webhook-id, dropped by the force)", "-", "-", "-", "-", str(webhook_repeats)),
        ]

    def event_table(self) -> list[tuple[str, ...]]:
        rows = []
        for source, subscribers in SUBSCRIPTIONS.items():
            statuses = self.outbox[source]
            rows.append(
                (
                    source,
                    str(self.events[source]),
                    str(statuses.get("delivered", 0)),
                    str(statuses.get("pending", 0)),
                    str(statuses.get("dead", 0)),
                    ", ".join(f"{s} {self.inbox.get((s, source), 0)}" for s in subscribers),
                )
            )
        return rows


def settle(system: System, ledger: Ledger, drill: str, within: float) -> tuple[Counts, list[str], float]:
    """Wait until nothing is wrong with the drill's counts (bounded): (counts, problems, seconds)."""
    from datetime import UTC

    started = time.monotonic()
    last: dict[str, Any] = {}
    # The figures are read once, at the end: not before every unreturned package's ladder is
    # over (and so its returns overdue), or a quick drill would read them as still due.
    last_step = max(step["offset_seconds"] for step in LADDER)
    ladders_end = max(
        (
            package.due_at.timestamp() + last_step + 2
            for package in ledger.of(drill)
            if any(ret.final_at is None for ret in package.returns.values())
        ),
        default=0.0,
    )

    def settled() -> bool:
        if not system.alive():
            return True  # nothing will change any more: report what is there
        if time.time() < ladders_end:
            return False
        counts = Counts.take(system, ledger, drill)
        last["counts"], last["problems"] = counts, counts.problems(datetime.now(UTC))
        return not last["problems"]

    wait_until(settled, timeout=within, every=2.0)
    waited = time.monotonic() - started
    # The metrics API's figures once the read model has settled (one call per package).
    counts = Counts.take(system, ledger, drill, with_api=system.alive())
    problems = counts.problems(datetime.now(UTC))
    if not system.alive():
        problems.insert(0, f"make run exited (code {system.process and system.process.returncode}) during the drill")
    return counts, problems, waited


def notice_key(payload: dict) -> tuple | None:
    if payload.get("event") == "package.issued":
        return ("deliver", uid(payload["dissemination_id"]))
    if payload.get("event") == "outcome_return.chase":
        return ("chase", uid(payload["return_id"]), payload["step"])
    return None


def _name(key: tuple) -> str:
    return " ".join(map(str, key))
