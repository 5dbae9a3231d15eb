"""Read latency of the metrics read model as it grows: 10k, 100k and 1M returns.

    make bench-metrics                          # SQLite under a temp VAR_DIR
    DATABASE_URL=postgresql://... make bench-metrics
    BENCH_SIZES=2000,20000 make bench-metrics   # a quick run

Generates a realistic, deterministic history (``random.Random(BENCH_SEED)``) of the events the
dissemination and outcomes services emit -- ``organisation.updated``, ``package.issued``,
``dissemination.delivered`` / ``delivery_failed`` / ``acknowledged``, ``outcome.filed``
(interims, finals, amendments), ``return.overdue``, ``chase.sent``, ``package.withdrawn`` --
shaped exactly as ``OutboxEvent.as_message`` sends them, and loads it through the real handlers
(``rebuilding.apply_batch``) in batches, in time order within each stage. The same database
grows stage by stage: each stage adds the returns needed to reach the next size, spread over the
last ~14 months like the first (a back-filled history: more packages per month, same months).

At each size it times, through the real API (Flask test client, leader token), a package read,
an organisation read and a 12-month summary, plus ``/healthz`` as the "static answer" baseline
(same Flask stack, no database, no audit). Goal: reads stay flat (largest size within 1.5x of
the smallest) and a package read stays within a few milliseconds of the static answer.

Bounded: each read N times (BENCH_READS, default 200) or 60 s (BENCH_READ_SECONDS), whichever
comes first; each stage's load stops after BENCH_LOAD_MINUTES (default 40), in which case the
stage is measured at the size reached and no later stage is loaded. Before measuring, the tables
are vacuumed and analysed (as autovacuum would have by then), so the reads see a settled database.

``BENCH_WRITE_TIMES=1``: the projection's writes are sent one at a time (no pipeline) and each
statement's time is added up and printed at the end: what PostgreSQL spends on each write of a
batch, which the pipeline otherwise hides behind Python's work (PostgreSQL only).
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import vocabulary

SCHEMA = "bench_metrics"
WINDOW_DAYS = 425  # ~14 months of history
FLAT_RATIO = 1.5
FEW_MS = 5.0  # "within a few milliseconds of a static answer"


def weights(names: tuple, *shares: int) -> dict:
    """How often each of the vocabulary's names comes up, in the vocabulary's order."""
    return dict(zip(names, shares, strict=True))


THREAT_AREAS = weights(vocabulary.THREAT_AREAS, 45, 20, 12, 8, 6, 5, 4)
RECIPIENTS = {1: 35, 2: 25, 3: 15, 4: 10, 5: 8, 6: 7}
SOURCE_EVALUATIONS = weights(vocabulary.SOURCE_EVALUATIONS, 20, 55, 25)
ASSESSMENTS = weights(vocabulary.INTELLIGENCE_ASSESSMENTS, 10, 35, 35, 15, 5)
BIG_FORCES = {
    "MPS": 6,
    "GMP": 4,
    "WMP": 4,
    "MERSEY": 3,
    "WYP": 3,
    "SYP": 2,
    "NORTHUMBRIA": 2,
    "TVP": 2,
    "ESSEX": 2,
    "KENT": 2,
    "HAMPS": 2,
    "LANCS": 2,
}
PRIMARY_ACTIONS = weights(vocabulary.ACTIONS, 22, 10, 20, 20, 5, 23)
PRIORITIES = weights(vocabulary.PRIORITIES, 15, 30, 25, 30)
STRANDS = weights(vocabulary.STRANDS, 60, 12, 20, 8)
ACCURACIES = weights(vocabulary.ACCURACIES, 40, 35, 20, 5)
TIMELINESS = weights(vocabulary.TIMELINESS, 70, 22, 8)
RESULT_FIELDS = vocabulary.RESULT_FIELDS
TOWNS = (
    "Blackpool",
    "Liverpool",
    "Birmingham",
    "Leeds",
    "Bristol",
    "Norwich",
    "Ipswich",
    "Exeter",
    "Swansea",
    "Hull",
    "Stoke",
    "Southend",
    "Reading",
    "Carlisle",
    "Lincoln",
    "Margate",
    "Bournemouth",
    "Derby",
)
SUBJECTS = (
    "deal line supplying {town}",
    "cuckooed address in {town}",
    "runners moved to {town}",
    "stash house near {town}",
    "missing child linked to {town}",
    "line holder active in {town}",
)
CHASE_STEPS = (
    ("reminder", -3, "recipient"),
    ("due_today", 0, "recipient"),
    ("overdue", 2, "recipient"),
    ("escalation", 7, "escalation"),
    ("centre_escalation", 14, "centre"),
)


def batched(events: Iterator[dict], size: int) -> Iterator[list[dict]]:
    """``events`` in lists of ``size`` (the last shorter): itertools.batched, Python 3.12."""
    while batch := list(itertools.islice(events, size)):
        yield batch


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def pick(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def iso(moment: datetime) -> str:
    return moment.isoformat()


class History:
    """A deterministic stream of the events the other services would have sent."""

    def __init__(self, seed: int, now: datetime, organisations: list[dict]):
        self.rng = random.Random(seed)
        self.now = now
        self.organisations = organisations
        recipients = [o for o in organisations if o["code"] != "NCLCC"]
        self.org_codes = [o["code"] for o in recipients]
        self.org_weights = [
            BIG_FORCES.get(o["code"], {"rocu": 1.5, "national": 0.5}.get(o["kind"], 1.0)) for o in recipients
        ]
        self.positions = {"dissemination": 0, "outcomes": 0}
        self.references: Counter = Counter()
        self.package_ids: list[uuid.UUID] = []
        self.returns = 0
        self.counts: Counter = Counter()
        self._seq = 0

    def new_id(self, made_at: datetime) -> uuid.UUID:
        """An id as ``shared.db.new_id`` makes it at ``made_at`` (a UUID version 7: the time in
        milliseconds, then random bits), its random part from the seeded generator."""
        millis = int(made_at.timestamp() * 1000)
        bits = self.rng.getrandbits(128)  # as many draws as a version 4 id took: the same history
        random_a, random_b = (bits >> 62) & 0xFFF, bits & ((1 << 62) - 1)
        return uuid.UUID(int=millis << 80 | 0x7 << 76 | random_a << 64 | 0b10 << 62 | random_b)

    def message(self, source: str, event_type: str, aggregate_id: str, at: datetime, payload: dict) -> dict:
        """The event as ``OutboxEvent.as_message`` sends it (payload through JSON, as ``emit`` stores it)."""
        self.positions[source] += 1
        self.counts[event_type] += 1
        return {
            "id": str(self.new_id(at)),
            "type": event_type,
            "source": source,
            "position": self.positions[source],
            "aggregate_id": aggregate_id,
            "occurred_at": iso(at),
            "payload": payload,
        }

    def organisation_events(self) -> list[dict]:
        at = self.now - timedelta(days=WINDOW_DAYS + 30)
        return [
            self.message(
                "dissemination",
                "organisation.updated",
                o["code"],
                at,
                {
                    "code": o["code"],
                    "name": o["name"],
                    "kind": o.get("kind"),
                    "region": o.get("region"),
                    "email": o.get("email"),
                    "webhook_url": o.get("webhook_url"),
                    "escalation_email": o.get("escalation_email"),
                    "active": True,
                },
            )
            for o in self.organisations
        ]

    # -- one stage: enough new packages to add `returns` returns, events in time order ------------
    def stage(self, returns: int) -> Iterator[dict]:
        rng = self.rng
        window = WINDOW_DAYS * 86400
        skeletons: list[tuple[datetime, int]] = []
        added = 0
        while added < returns:
            n = min(pick(rng, RECIPIENTS), returns - added)
            issued = self.now - timedelta(seconds=rng.uniform(3600, window))
            skeletons.append((issued, n))
            added += n
        skeletons.sort()
        pending: list[tuple] = []  # (at, seq, source, type, aggregate_id, payload): a heap
        for issued, n in skeletons:
            while pending and pending[0][0] <= issued:
                at, _, source, event_type, aggregate_id, payload = heapq.heappop(pending)
                yield self.message(source, event_type, aggregate_id, at, payload)
            yield from self.package(issued, n, pending)
        while pending:
            at, _, source, event_type, aggregate_id, payload = heapq.heappop(pending)
            yield self.message(source, event_type, aggregate_id, at, payload)

    def push(
        self,
        pending: list,
        at: datetime,
        cutoff: datetime,
        source: str,
        event_type: str,
        aggregate_id: str,
        payload: dict,
    ) -> bool:
        if at > cutoff:  # in the future, or after the package was withdrawn: never sent
            return False
        self._seq += 1
        heapq.heappush(pending, (at, self._seq, source, event_type, aggregate_id, payload))
        return True

    def package(self, issued: datetime, n: int, pending: list) -> Iterator[dict]:
        rng = self.rng
        package_id = self.new_id(issued)
        self.package_ids.append(package_id)
        self.returns += n
        threat_area = pick(rng, THREAT_AREAS)
        due = issued + timedelta(days=rng.choices((28, 14, 42), weights=(70, 20, 10))[0])
        self.references[issued.year] += 1
        codes: list[str] = []
        while len(codes) < n:
            code = rng.choices(self.org_codes, weights=self.org_weights)[0]
            if code not in codes:
                codes.append(code)
        town = rng.choice(TOWNS)
        package = {
            "package_id": str(package_id),
            "reference": f"NCLCC-{issued.year}-{self.references[issued.year]:06d}",
            "title": f"{threat_area.replace('_', ' ').capitalize()}: {rng.choice(SUBJECTS).format(town=town)}",
            "threat_area": threat_area,
            "classification": rng.choices(("OFFICIAL-SENSITIVE", "OFFICIAL"), weights=(85, 15))[0],
            "source_evaluation": pick(rng, SOURCE_EVALUATIONS),
            "intelligence_assessment": pick(rng, ASSESSMENTS),
            "handling_code": rng.choices(("P", "C"), weights=(80, 20))[0],
            "issued_at": iso(issued),
            "issued_by": f"analyst{rng.randint(1, 40)}@nclcc",
            "outcome_due_at": iso(due),
        }
        disseminations = [
            {
                "dissemination_id": str(self.new_id(issued)),
                "package_id": str(package_id),
                "organisation": code,
                "due_at": iso(due),
            }
            for code in codes
        ]
        cutoff = self.now
        if rng.random() < 0.02:
            withdrawn_at = issued + timedelta(seconds=rng.uniform(3600, 20 * 86400))
            if withdrawn_at <= self.now:
                cutoff = withdrawn_at
                self.push(
                    pending,
                    withdrawn_at,
                    self.now,
                    "dissemination",
                    "package.withdrawn",
                    str(package_id),
                    {
                        **package,
                        "withdrawn_at": iso(withdrawn_at),
                        "withdrawn_by": "lead@nclcc",
                        "reason": "Superseded by a later package.",
                        "dissemination_ids": [d["dissemination_id"] for d in disseminations],
                    },
                )
        yield self.message(
            "dissemination", "package.issued", str(package_id), issued, {**package, "disseminations": disseminations}
        )
        for dissemination in disseminations:
            self.one_return(package, dissemination, issued, due, cutoff, pending)

    def one_return(
        self, package: dict, dissemination: dict, issued: datetime, due: datetime, cutoff: datetime, pending: list
    ) -> None:
        rng = self.rng
        return_id = dissemination["dissemination_id"]
        org = dissemination["organisation"]
        roll = rng.random()
        delivered_at = None
        if roll < 0.95:
            delivered_at = issued + timedelta(seconds=5 + rng.expovariate(1 / 120))
            self.push(
                pending,
                delivered_at,
                cutoff,
                "dissemination",
                "dissemination.delivered",
                return_id,
                {
                    **dissemination,
                    "delivered_at": iso(delivered_at),
                    "channel": rng.choice(("email", "webhook")),
                    "attempts": 1,
                },
            )
        elif roll < 0.97:
            self.push(
                pending,
                issued + timedelta(seconds=2560),
                cutoff,
                "dissemination",
                "dissemination.delivery_failed",
                return_id,
                {**dissemination, "error": "email: 550 mailbox unavailable", "attempts": 6},
            )
        if delivered_at and rng.random() < 0.632:
            at = delivered_at + timedelta(hours=min(24 * 20, rng.lognormvariate(1.6, 1.2)))
            self.push(
                pending,
                at,
                cutoff,
                "dissemination",
                "dissemination.acknowledged",
                return_id,
                {**dissemination, "acknowledged_at": iso(at), "acknowledged_by": f"officer@{org.lower()}"},
            )
        # The outcome: 5% go overdue (40% of those file late); ~77% of the rest file on time.
        span = (due - issued).total_seconds()
        late = rng.random() < 0.05
        final_at = None
        if late:
            self.push(
                pending,
                due + timedelta(seconds=rng.uniform(1, 60)),
                cutoff,
                "outcomes",
                "return.overdue",
                return_id,
                {
                    "return_id": return_id,
                    "package_id": package["package_id"],
                    "reference": package["reference"],
                    "organisation": org,
                    "due_at": iso(due),
                    "overdue_at": iso(due + timedelta(seconds=60)),
                },
            )
            if rng.random() < 0.4:
                final_at = due + timedelta(days=rng.uniform(1, 30))
        elif rng.random() < 0.768:
            final_at = issued + timedelta(seconds=span * rng.triangular(0.05, 1.0, 0.8))
        base = dict(return_id=return_id, package=package, org=org, due=due, cutoff=cutoff, pending=pending)
        version = 0
        if final_at is not None:
            if rng.random() < 0.2:  # an interim first
                version += 1
                self.file(
                    **base,
                    version=version,
                    status="interim",
                    at=issued + (final_at - issued) * rng.uniform(0.2, 0.7),
                    outcome=self.outcome(package),
                )
            version += 1
            outcome = self.outcome(package)
            filed = self.file(**base, version=version, status="final", at=final_at, outcome=outcome)
            if filed and rng.random() < 0.1:  # an amendment: further results came in
                self.file(
                    **base,
                    version=version + 1,
                    status="final",
                    at=final_at + timedelta(days=rng.uniform(1, 30)),
                    outcome=self.amended(outcome),
                )
        elif rng.random() < 0.07:  # an interim only, so far
            self.file(
                **base,
                version=1,
                status="interim",
                at=issued + timedelta(seconds=span * rng.uniform(0.1, 0.9)),
                outcome=self.outcome(package),
            )
        # Chases: the reminder when nothing final three days before; the ladder while late.
        for step, days, notify in CHASE_STEPS:
            at = due + timedelta(days=days, seconds=rng.uniform(0, 60))
            if (final_at is not None and final_at <= at) or (not late and step != "reminder"):
                continue
            self.push(
                pending,
                at,
                cutoff,
                "outcomes",
                "chase.sent",
                return_id,
                {
                    "return_id": return_id,
                    "package_id": package["package_id"],
                    "organisation": org,
                    "step": step,
                    "notify": notify,
                    "channel": "email",
                    "sent_at": iso(at),
                },
            )

    def file(
        self,
        *,
        return_id: str,
        package: dict,
        org: str,
        due: datetime,
        cutoff: datetime,
        pending: list,
        version: int,
        status: str,
        at: datetime,
        outcome: dict,
    ) -> bool:
        return self.push(
            pending,
            at,
            cutoff,
            "outcomes",
            "outcome.filed",
            return_id,
            {
                "return_id": return_id,
                "package_id": package["package_id"],
                "reference": package["reference"],
                "organisation": org,
                "due_at": iso(due),
                "version": version,
                "amendment": version > 1,
                "status": status,
                "filed_at": iso(at),
                "filed_via": self.rng.choices(("form", "api"), (70, 30))[0],
                "on_time": at <= due,
                "outcome": outcome,
            },
        )

    def outcome(self, package: dict) -> dict:
        rng = self.rng
        actions = [pick(rng, PRIMARY_ACTIONS)]
        if actions[0] != "no_action" and rng.random() < 0.25:
            second = pick(rng, PRIMARY_ACTIONS)
            if second not in actions and second != "no_action":
                actions.append(second)
        priority = pick(rng, PRIORITIES)
        results = dict.fromkeys(RESULT_FIELDS, 0)
        if "enforcement" in actions:
            arrests = rng.choices(range(7), weights=(30, 30, 18, 10, 6, 4, 2))[0]
            results.update(
                arrests=arrests,
                charges=sum(rng.random() < 0.6 for _ in range(arrests)),
                warrants_executed=rng.choices(range(4), weights=(40, 40, 15, 5))[0],
                weapons_seized=rng.choices(range(3), weights=(85, 12, 3))[0],
            )
            if package["threat_area"] == "county_lines":
                results["deal_lines_closed"] = rng.choices(range(3), weights=(60, 35, 5))[0]
            if rng.random() < 0.5:
                grams = round(rng.lognormvariate(3.5, 1.3), 1)
                results.update(
                    drugs_seized_grams=grams, drugs_estimated_value_gbp=round(grams * rng.uniform(20, 80), 2)
                )
            if rng.random() < 0.4:
                results["cash_seized_gbp"] = round(rng.lognormvariate(7.5, 1.2), 2)
        if "safeguarding" in actions:
            people = rng.choices(range(5), weights=(20, 40, 25, 10, 5))[0]
            results.update(
                people_safeguarded=people,
                children_safeguarded=rng.randint(0, people),
                safeguarding_referrals=rng.randint(0, 3),
            )
        strands: list[str] = []
        if actions != ["no_action"]:
            for _ in range(rng.choice((1, 1, 2))):
                strand = pick(rng, STRANDS)
                if strand not in strands:
                    strands.append(strand)
        return {
            "actions": actions,
            "no_action_reason": "Already known to the force; no new lines of enquiry."
            if "no_action" in actions
            else None,
            "passed_to": rng.choice(self.org_codes) if "passed_on" in actions else None,
            "priority": priority,
            "tasking_forum": None
            if priority == "not_prioritised"
            else rng.choice(("Force TTCG", "ROCU tasking", "Local tasking")),
            "results": results,
            "attribution": rng.choices(("direct", "contributed"), (55, 45))[0] if any(results.values()) else None,
            "strands": strands,
            "intelligence_feedback": {
                "usefulness": rng.choices(range(1, 6), weights=(5, 12, 30, 35, 18))[0],
                "accuracy": pick(rng, ACCURACIES),
                "timeliness": pick(rng, TIMELINESS),
            },
        }

    def amended(self, outcome: dict) -> dict:
        """A later version: the enquiry went on and more came of it."""
        amended = json.loads(json.dumps(outcome))
        if "no_action" in amended["actions"]:
            amended.update(actions=["further_development"], no_action_reason=None, strands=["pursue"])
        results = amended["results"]
        extra = self.rng.randint(1, 3)
        results["arrests"] += extra
        results["charges"] += self.rng.randint(0, extra)
        if "enforcement" not in amended["actions"]:
            amended["actions"].append("enforcement")
        amended["attribution"] = amended["attribution"] or "contributed"
        return amended


def measure(client, make_url, headers: dict, reads: int, seconds: float, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        response = client.get(make_url(), headers=headers)
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    while len(timings) < reads and time.monotonic() < deadline:
        url = make_url()
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return timings


def time_each_write() -> Callable[[], None]:
    """The projection's writes one at a time, each statement's time added up (``BENCH_WRITE_TIMES``);
    returns what prints the table."""
    import contextlib

    from services.metrics import projections
    from shared import db

    spent: Counter = Counter()
    sent: Counter = Counter()
    execute_write = db.execute_write

    def timed(session, statement, params, **kwargs):
        started = time.perf_counter()
        execute_write(session, statement, params, **kwargs)
        name = " ".join(str(statement.compile(dialect=session.get_bind().dialect)).split()[:3])
        spent[name] += time.perf_counter() - started
        sent[name] += 1

    @contextlib.contextmanager
    def one_at_a_time(session):
        yield

    db.execute_write = projections.execute_write = timed
    projections.pipelined_writes = one_at_a_time

    def report() -> None:
        print("\nthe projection's writes, one at a time (BENCH_WRITE_TIMES): seconds, statements, statement")
        for name, seconds in spent.most_common():
            print(f"{seconds:9.2f} {sent[name]:6d}  {name}")

    return report


def settle(database) -> None:
    """Vacuum and analyse the read model's tables, as autovacuum would after a load this size."""
    from sqlalchemy import text

    if database.settings.on_postgres:
        with database.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in (
                "facts",
                "hours_to_return",
                "returns",
                "packages",
                "inbox_events",
                "organisations",
                "audit_log",
            ):
                connection.execute(text(f'VACUUM ANALYZE "{table}"'))
    else:
        with database.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()


def main() -> None:
    sizes = [int(part) for part in os.environ.get("BENCH_SIZES", "10000,100000,1000000").split(",") if part.strip()]
    batch_size = env_int("BENCH_BATCH", 5000)
    reads = env_int("BENCH_READS", 200)
    read_seconds = env_int("BENCH_READ_SECONDS", 60)
    load_limit = env_int("BENCH_LOAD_MINUTES", 40) * 60
    seed = env_int("BENCH_SEED", 20250101)
    if sizes != sorted(set(sizes)) or not sizes:
        raise SystemExit("BENCH_SIZES must be increasing, e.g. 10000,100000,1000000")
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="nclcc-bench-metrics-"))
    os.environ["METRICS_DATABASE_SCHEMA"] = SCHEMA
    from sqlalchemy import func, select, text

    from services import settings_for
    from services.metrics import SERVICE, create_app
    from services.metrics.models import Fact, HoursToReturn, PackageState, ReturnState
    from services.metrics.rebuilding import apply_batch, read_ahead
    from shared.auth import mint_token
    from shared.db import Database
    from shared.migrate import upgrade

    settings = settings_for("metrics")
    report_writes = time_each_write() if os.environ.get("BENCH_WRITE_TIMES") == "1" else None
    if settings.on_postgres:
        database = Database(settings)
        with database.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        database.engine.dispose()
    upgrade(SERVICE, settings)
    app = create_app()
    database: Database = app.extensions["database"]
    client = app.test_client()
    leader = {"Authorization": "Bearer " + mint_token(settings, sub="bench@nclcc", org="NCLCC", roles=["leader"])}
    backend = "PostgreSQL" if settings.on_postgres else f"SQLite ({os.environ['VAR_DIR']})"

    organisations = json.loads(
        (
            Path(__file__).resolve().parent.parent / "services" / "dissemination" / "seed" / "organisations.json"
        ).read_text()
    )
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    history = History(seed, now, organisations)
    codes = [o["code"] for o in organisations]
    this_month = now.strftime("%Y-%m")
    year_ago = (now.replace(day=1) - timedelta(days=335)).strftime("%Y-%m")
    pick_rng = random.Random(seed + 1)

    def apply(events: list[dict]) -> None:
        session = database.session()
        try:
            apply_batch(session, events)
        finally:
            session.close()

    apply(history.organisation_events())
    print(
        f"metrics read model benchmark, in-process, {backend}; sizes {sizes}, batches of {batch_size} events, "
        f"{reads} reads each (max {read_seconds}s), seed {seed}",
        flush=True,
    )
    rows: list[dict] = []
    returns_before = 0
    for size in sizes:
        wanted = size - history.returns
        applied_seconds, partial = 0.0, False
        started = time.perf_counter()
        deadline = time.monotonic() + load_limit
        events = 0
        # The next batch is made (by a thread of its own) while the last is applied, as a
        # rebuild fetches its next page: half of applying one is waiting on the database.
        batches = read_ahead(batched(history.stage(wanted), batch_size))
        for batch in batches:
            t0 = time.perf_counter()
            apply(batch)
            applied_seconds += time.perf_counter() - t0
            events += len(batch)
            if time.monotonic() > deadline:
                partial = True
                break
        batches.close()  # stops making batches at a partial stage
        wall = time.perf_counter() - started
        settle_started = time.perf_counter()
        settle(database)
        settled = time.perf_counter() - settle_started
        with database.session() as session:
            facts = session.scalar(select(func.count()).select_from(Fact))
            hours = session.scalar(select(func.count()).select_from(HoursToReturn))
            loaded = session.scalar(select(func.count()).select_from(ReturnState))
        added, returns_before = loaded - returns_before, loaded
        print(
            f"\n== {loaded:,} returns{' (PARTIAL: load time limit reached)' if partial else ''}: "
            f"{len(history.package_ids):,} packages, {facts + hours:,} fact rows "
            f"({hours:,} of them in the hours histograms)",
            flush=True,
        )
        print(
            f"load: {events:,} events, {added:,} returns in {wall:.1f}s wall "
            f"({applied_seconds:.1f}s in apply_batch): "
            f"{events / wall:,.0f} events/s, {added / wall:,.0f} returns/s wall; "
            f"{events / applied_seconds:,.0f} events/s, {added / applied_seconds:,.0f} returns/s in the handlers",
            flush=True,
        )
        print(f"settle: VACUUM ANALYZE / ANALYZE in {settled:.1f}s", flush=True)
        package_ids = history.package_ids
        if partial:  # the batches made ahead and never applied named packages the model lacks
            with database.session() as session:
                package_ids = list(session.scalars(select(PackageState.package_id)))
        timings = {
            "package": measure(
                client,
                lambda ids=package_ids: f"/api/v1/metrics/packages/{pick_rng.choice(ids)}",
                leader,
                reads,
                read_seconds,
            ),
            "org": measure(
                client, lambda: f"/api/v1/metrics/organisations/{pick_rng.choice(codes)}", leader, reads, read_seconds
            ),
            "summary": measure(
                client, lambda: f"/api/v1/metrics/summary?from={year_ago}&to={this_month}", leader, reads, read_seconds
            ),
            "healthz": measure(client, lambda: "/healthz", {}, reads, read_seconds),
        }
        row = {"size": loaded, "partial": partial, "events": events, "wall": wall, "returns": added}
        for name, values in timings.items():
            row[name] = (statistics.median(values), percentile(values, 0.95), len(values))
        rows.append(row)
        print(f"{'read':10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8}")
        for name in timings:
            p50, p95, n = row[name]
            print(f"{name:10} {n:5d} {p50:8.2f} {p95:8.2f}")
        print(f"package p50 - healthz p50 = {row['package'][0] - row['healthz'][0]:.2f} ms", flush=True)
        if partial:
            break

    print(f"\nmetrics read model, {backend}: latency by size (ms)")
    print(
        f"{'returns':>10} | {'package p50/p95':>15} | {'org p50/p95':>15} | {'summary p50/p95':>15} | "
        f"{'healthz p50':>11} | {'pkg-healthz':>11} | {'load ev/s':>9} | {'returns/s':>9}"
    )
    for row in rows:
        cells = [f"{row[name][0]:6.2f}/{row[name][1]:<8.2f}" for name in ("package", "org", "summary")]
        print(
            f"{row['size']:>10,} | {cells[0]:>15} | {cells[1]:>15} | {cells[2]:>15} | {row['healthz'][0]:11.2f} | "
            f"{row['package'][0] - row['healthz'][0]:11.2f} | {row['events'] / row['wall']:9,.0f} | "
            f"{row['returns'] / row['wall']:9,.0f}" + ("  (partial)" if row["partial"] else "")
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"\nflatness, p50 at {last['size']:,} / p50 at {first['size']:,} (goal <= {FLAT_RATIO}x):")
        for name in ("package", "org", "summary"):
            ratio = last[name][0] / first[name][0]
            print(f"  {name:8} {ratio:5.2f}x  {'PASS' if ratio <= FLAT_RATIO else 'FAIL'}")
    gap = rows[-1]["package"][0] - rows[-1]["healthz"][0]
    print(
        f"package read vs static answer at {rows[-1]['size']:,}: +{gap:.2f} ms p50 "
        f"(goal: a few ms, taken as <= {FEW_MS:.0f}) {'PASS' if gap <= FEW_MS else 'FAIL'}"
    )
    print(f"event mix: {dict(history.counts.most_common())}")
    if report_writes is not None:
        report_writes()


if __name__ == "__main__":
    main()
