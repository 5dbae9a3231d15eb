"""``make demo``: a year of the centre's history, loaded into the running system (``make run``)
through its real APIs, so that the dashboard shows what it would in use.

What it loads (``docs/demo.md``): a few hundred packages across the threat areas, issued on
working days over the past year to forces and ROCUs; acknowledgements; outcome returns with a
realistic spread of lateness, interim then final; amendments; no-action returns with reasons;
pass-ons to a force whose own return follows (onward chains); and the chase ladder's steps for
every late return, sent at the times the ladder would have sent them.

How history gets its dates: every request carries ``X-Demo-Clock`` (``shared/clock.py``), the
moment it happened, which the services honour only in development (production answers 400). The
chase sweep is the cron's own function (``services.outcomes.chasing.sweep``) run here, once a
simulated day, under the same clock, and the steps it claims are sent here too, so each is sent
when the ladder says. Events flow to the metrics service through the outbox, as in use.

Deterministic (``--seed``) and safe to run again: every POST carries an ``Idempotency-Key``
made from the seed and what it does, so a second run replays the first's answers and creates
nothing; its dates are read back from the first run's first package.

    make demo [DEMO_PACKAGES=150] [DEMO_SEED=11]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from services import settings_for
from shared.auth import mint_token
from shared.clock import DEMO_CLOCK_HEADER, demo_clock
from shared.logs import configure_logging
from shared.settings import ROOT, Settings

YEAR = timedelta(days=365)
HTTP_TIMEOUT = 30
WAIT_SECONDS = 300  # the longest wait for an event to reach another service (behind the worker's queue)
LADDER_LEAD = timedelta(days=4)  # the default chase ladder's first step is 3 days before the due date

THREAT_WEIGHTS = {
    "county_lines": 34,
    "drugs_supply": 20,
    "exploitation": 16,
    "firearms": 10,
    "modern_slavery": 8,
    "economic_crime": 7,
    "other": 5,
}
# (code, region's ROCU, weight): the forces that receive most of the centre's packages.
FORCES = [
    ("MPS", "ROCU-LDN", 14),
    ("GMP", "ROCU-NW", 10),
    ("WMP", "ROCU-WM", 9),
    ("MERSEY", "ROCU-NW", 9),
    ("WYP", "ROCU-YH", 6),
    ("SYP", "ROCU-YH", 4),
    ("NORTHUMBRIA", "ROCU-NE", 4),
    ("LANCS", "ROCU-NW", 4),
    ("KENT", "ROCU-SE", 4),
    ("ESSEX", "ROCU-ER", 4),
    ("TVP", "ROCU-SE", 3),
    ("HAMPS", "ROCU-SE", 3),
    ("NOTTS", "ROCU-EM", 3),
    ("DC", "ROCU-SW", 3),
    ("ASP", "ROCU-SW", 3),
    ("SWP", "ROCU-WA", 3),
    ("BTP", None, 3),
    ("CLEVELAND", "ROCU-NE", 2),
    ("LEICS", "ROCU-EM", 2),
    ("CHESHIRE", "ROCU-NW", 2),
    ("SUSSEX", "ROCU-SE", 2),
    ("HERTS", "ROCU-ER", 2),
    ("STAFFS", "ROCU-WM", 2),
    ("HUMBERSIDE", "ROCU-YH", 2),
]
FORCES_OF_ROCU: dict[str, list[str]] = {}
for _code, _rocu, _weight in FORCES:
    if _rocu:
        FORCES_OF_ROCU.setdefault(_rocu, []).append(_code)

PLACES = [
    "Wigan",
    "Blackpool",
    "Stoke",
    "Swindon",
    "Exeter",
    "Norwich",
    "Ipswich",
    "Hull",
    "Doncaster",
    "Middlesbrough",
    "Cardiff",
    "Southend",
    "Reading",
    "Leicester",
    "Crawley",
    "Barrow",
]
LINES = ["Dex", "Tommy", "Bandz", "Milly", "K2", "Ricky", "Jojo", "Snowy", "Ace", "Lulu", "Benz", "Nino"]
TITLES = {
    "county_lines": "Line '{line}' running from {city} into {place}",
    "drugs_supply": "Wholesale cocaine supply to {place} dealers",
    "exploitation": "Children missing from care seen in {place} trap house",
    "firearms": "Converted pistol offered for sale in {place}",
    "modern_slavery": "Forced labour at car washes around {place}",
    "economic_crime": "Cash couriers laundering line profits through {place}",
    "other": "Cuckooed addresses reported in {place}",
}
CITIES = ["Liverpool", "London", "Birmingham", "Manchester", "Leeds", "Bristol"]
NO_ACTION_REASONS = [
    "Already subject of an ongoing operation; the intelligence adds nothing new.",
    "Subjects no longer resident in the force area.",
    "Insufficient detail to develop further at this time.",
    "Assessed against current tasking priorities and not adopted.",
]
FORUMS = {"high": "Force SOC tasking", "medium": "Local tasking and coordination", "low": "Neighbourhood tasking"}


@dataclass
class Step:
    """One thing that happened, at ``at``, in the order it happened."""

    at: datetime
    kind: str  # issue, acknowledge, file, sweep
    package: int
    organisation: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # interim, final, amendment


@dataclass
class Plan:
    end: datetime
    packages: list[dict[str, Any]]
    steps: list[Step]


def _working_time(rng: random.Random, moment: datetime) -> datetime:
    """The same day at office hours, moved off a weekend to the Monday."""
    moment = moment.replace(hour=rng.randint(8, 17), minute=rng.randint(0, 59), second=0, microsecond=0)
    while moment.weekday() >= 5:
        moment += timedelta(days=1)
    return moment


def _results(rng: random.Random, threat: str, actions: list[str]) -> dict[str, float]:
    results: dict[str, float] = {}
    if "enforcement" in actions:
        arrests = rng.choice([0, 1, 1, 2, 2, 3, 4, 6])
        results["arrests"] = arrests
        results["charges"] = rng.randint(0, arrests)
        results["warrants_executed"] = rng.choice([0, 1, 1, 2])
        if threat in ("county_lines", "drugs_supply"):
            grams = rng.choice([0, 28, 56, 120, 250, 500, 1000, 3000])
            results["drugs_seized_grams"] = grams
            results["drugs_estimated_value_gbp"] = grams * rng.choice([40, 50, 60])
            results["cash_seized_gbp"] = rng.choice([0, 0, 850, 2400, 6000, 15000, 42000])
        if threat == "county_lines":
            results["deal_lines_closed"] = rng.choice([0, 1, 1, 1, 2])
        if threat in ("firearms", "county_lines") and rng.random() < 0.35:
            results["weapons_seized"] = rng.randint(1, 3)
        if threat == "economic_crime":
            results["cash_seized_gbp"] = rng.choice([5000, 12000, 30000, 95000])
    if "safeguarding" in actions:
        people = rng.randint(1, 4)
        results["people_safeguarded"] = people
        results["children_safeguarded"] = rng.randint(0, people) if threat in ("exploitation", "county_lines") else 0
        results["safeguarding_referrals"] = rng.randint(1, people + 1)
    return {name: value for name, value in results.items() if value}


def _return_body(
    rng: random.Random, threat: str, status: str, actions: list[str], late: bool, passed_to: str | None = None
) -> dict[str, Any]:
    results = _results(rng, threat, actions)
    priority = (
        "not_prioritised"
        if actions == ["no_action"] or actions == ["recorded_only"]
        else rng.choices(["high", "medium", "low"], [4, 4, 2])[0]
    )
    body: dict[str, Any] = {
        "status": status,
        "actions": actions,
        "priority": priority,
        "results": results,
        "strands": sorted(
            {"enforcement": "pursue", "safeguarding": "protect", "further_development": "pursue"}.get(a, "prevent")
            for a in actions
            if a not in ("no_action", "recorded_only", "passed_on")
        ),
        "intelligence_feedback": {
            "usefulness": rng.choices([1, 2, 3, 4, 5], [1, 2, 4, 5, 3])[0],
            "accuracy": rng.choices(["confirmed", "partly_confirmed", "not_confirmed", "false"], [5, 4, 3, 1])[0],
            "timeliness": rng.choices(["timely", "late_but_useful", "too_late"], [7, 2, 1])[0],
        },
    }
    if priority != "not_prioritised":
        body["tasking_forum"] = FORUMS[priority]
    if results:
        body["attribution"] = rng.choices(["direct", "contributed"], [3, 2])[0]
    if "no_action" in actions:
        body["no_action_reason"] = rng.choice(NO_ACTION_REASONS)
    if passed_to:
        body["passed_to"] = passed_to
    if status == "interim":
        body["comments"] = "Work continues; a final return will follow."
    elif late:
        body["comments"] = "Return delayed while the operation concluded."
    return body


def _final_after(rng: random.Random, due: datetime) -> timedelta:
    """When a final return comes, against its due date: most on time, a long tail late."""
    kind = rng.choices(["on_time", "late", "later", "very_late"], [56, 24, 14, 6])[0]
    days = {
        "on_time": rng.uniform(-20, -0.5),
        "late": rng.uniform(0.5, 7),
        "later": rng.uniform(7, 21),
        "very_late": rng.uniform(21, 60),
    }[kind]
    return timedelta(days=days)


def plan(seed: int, count: int, end: datetime) -> Plan:
    """The demo world: ``count`` packages over the year to ``end``, and each step of their story."""
    rng = random.Random(seed)
    start = end - YEAR
    issued = sorted(_working_time(rng, start + timedelta(days=rng.uniform(0, 358))) for _ in range(count))
    packages: list[dict[str, Any]] = []
    steps: list[Step] = []
    for index, issued_at in enumerate(issued):
        threat = rng.choices(list(THREAT_WEIGHTS), list(THREAT_WEIGHTS.values()))[0]
        force, rocu, _ = rng.choices(FORCES, [w for *_, w in FORCES])[0]
        recipients = [force]
        if rocu and rng.random() < 0.45:
            recipients.append(rocu)
        if rng.random() < 0.25:
            other = rng.choices(FORCES, [w for *_, w in FORCES])[0][0]
            if other not in recipients:
                recipients.append(other)
        place = rng.choice(PLACES)
        title = TITLES[threat].format(line=rng.choice(LINES), city=rng.choice(CITIES), place=place)
        handling = rng.choices(["P", "C"], [4, 1])[0]
        package = {
            "title": title,
            "summary": f"Demo intelligence package {index + 1}: {title}. Subjects, addresses and phone "
            f"numbers are in the attached report (not reproduced in the demo).",
            "threat_area": threat,
            "classification": rng.choices(["OFFICIAL-SENSITIVE", "OFFICIAL"], [4, 1])[0],
            "source_evaluation": rng.choices([1, 2, 3], [2, 5, 2])[0],
            "intelligence_assessment": rng.choices("ABCDE", [2, 5, 4, 1, 1])[0],
            "handling_code": handling,
            "recipients": recipients,
        }
        if handling == "C":
            package["handling_conditions"] = "Not to be shared outside the receiving force's SOC team."
        packages.append(package)
        steps.append(Step(issued_at, "issue", index))
        due = issued_at + timedelta(days=28)
        holders = set(recipients) | {"NCLCC"}
        for organisation in recipients:
            steps.extend(_recipient_story(rng, index, threat, organisation, issued_at, due, holders, onward=False))
    day = start.replace(hour=7, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day < end:
        steps.append(Step(day, "sweep", -1))
        day += timedelta(days=1)
    kept = [step for step in steps if step.at <= end]
    kept.sort(key=lambda step: (step.at, step.kind != "issue"))
    return Plan(end, packages, kept)


def _recipient_story(
    rng: random.Random,
    index: int,
    threat: str,
    organisation: str,
    issued_at: datetime,
    due: datetime,
    holders: set[str],
    onward: bool,
) -> list[Step]:
    steps: list[Step] = []
    if rng.random() < 0.88:
        steps.append(Step(issued_at + timedelta(hours=rng.expovariate(1 / 18)), "acknowledge", index, organisation))
    if rng.random() < 0.07:
        return steps  # never returned: chased up the whole ladder
    if rng.random() < 0.35:
        interim_at = issued_at + timedelta(days=rng.uniform(4, 20))
        body = _return_body(rng, threat, "interim", ["further_development"], late=False)
        steps.append(Step(interim_at, "file", index, organisation, body, "interim"))
    else:
        interim_at = issued_at
    final_at = max(due + _final_after(rng, due), interim_at + timedelta(days=1))
    late = final_at > due
    passed_to = None
    rocu_forces = [f for f in FORCES_OF_ROCU.get(organisation, []) if f not in holders]
    roll = rng.random()
    if not onward and organisation.startswith("ROCU-") and rocu_forces and roll < 0.45:
        passed_to = rng.choice(rocu_forces)
        actions = ["passed_on"] + (["further_development"] if rng.random() < 0.5 else [])
    elif not onward and rocu_forces and roll < 0.06:
        passed_to = rng.choice(rocu_forces)
        actions = ["passed_on"]
    elif roll < 0.14:
        actions = ["no_action"]
    elif roll < 0.2:
        actions = ["recorded_only"]
    else:
        actions = rng.choices(
            [["enforcement"], ["enforcement", "safeguarding"], ["safeguarding"], ["further_development"]],
            [6, 2, 2, 1],
        )[0]
    body = _return_body(rng, threat, "final", actions, late, passed_to)
    steps.append(Step(final_at, "file", index, organisation, body, "final"))
    if passed_to:
        holders.add(passed_to)
        onward_due = final_at + timedelta(days=28)
        steps.extend(_recipient_story(rng, index, threat, passed_to, final_at, onward_due, holders, onward=True))
    elif rng.random() < 0.14 and body["results"]:
        amended = dict(body, results=dict(body["results"]))
        amended["results"]["charges"] = amended["results"].get("charges", 0) + rng.randint(1, 3)
        amended["results"]["arrests"] = max(amended["results"].get("arrests", 0), amended["results"]["charges"])
        amended["comments"] = "Amended: further charges after the suspects were interviewed."
        steps.append(
            Step(final_at + timedelta(days=rng.uniform(5, 45)), "file", index, organisation, amended, "amendment")
        )
    return steps


# --- loading ---------------------------------------------------------------------------------


class NotRunning(Exception):
    pass


class Supervisorctl:
    """The cron process of the system ``make run`` started, paused while history is written: its
    chase sweep works at today's date and would chase at once every return the load has issued but
    not yet seen filed. The load runs the sweep itself, day by day, instead."""

    def __init__(self, run_dir: Path):
        self.config = run_dir / "supervisord.conf"
        self.command = [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(self.config)]

    def __call__(self, action: str, program: str) -> None:
        if not self.config.exists():
            raise NotRunning(f"no supervisord configuration at {self.config} (is RUN_DIR the one `make run` used?)")
        done = subprocess.run([*self.command, action, program], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "ALREADY" not in done.stdout.upper() and "NOT RUNNING" not in done.stdout.upper():
            raise NotRunning(f"supervisorctl {action} {program}: {(done.stdout + done.stderr).strip()[:300]}")

    @contextmanager
    def paused(self, program: str) -> Iterator[None]:
        self("stop", program)
        try:
            yield
        finally:
            self("start", program)


class Loader:
    def __init__(self, settings: Settings, seed: int, out=sys.stdout):
        self.settings = settings
        self.seed = seed
        self.out = out
        self.urls = settings.service_urls
        self.http = requests.Session()
        self.tokens: dict[tuple[str, str], str] = {}
        self.package_ids: dict[int, str] = {}
        self.disseminations: dict[tuple[int, str], str] = {}
        self.confirmed: set[str] = set()  # expected returns seen in the outcomes service
        self.due: dict[str, datetime] = {}  # each dissemination's due date
        self.counts: Counter[str] = Counter()
        self.anchor_key = ""  # the first package's create, sent early by ``anchor``
        self.anchor_fresh = False

    # -- HTTP ----------------------------------------------------------------------------------
    def token(self, org: str, role: str) -> str:
        if (org, role) not in self.tokens:
            roles = role.split(",")
            self.tokens[org, role] = mint_token(
                self.settings, sub=f"demo-{roles[0]}@{org.lower()}", org=org, roles=roles, ttl=timedelta(hours=2)
            )
        return self.tokens[org, role]

    def call(self, method: str, service: str, path: str, org: str, role: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(org, role)}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.urls[service] + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs)

    def post(self, service: str, path: str, org: str, role: str, at: datetime, key: str, body=None) -> dict:
        response = self.call(
            "POST",
            service,
            path,
            org,
            role,
            json=body,
            headers={"Idempotency-Key": f"demo-{self.seed}-{key}", DEMO_CLOCK_HEADER: at.isoformat()},
        )
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
        replayed = response.headers.get("Idempotent-Replayed") and not (key == self.anchor_key and self.anchor_fresh)
        self.counts["replayed" if replayed else "created"] += 1
        return response.json()

    def wait(self, what: str, check) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"gave up waiting for {what} after {WAIT_SECONDS} s: are the worker and cron running?")

    def pending_events(self) -> int:
        """Events the dissemination and outcomes services have not yet delivered (all subscribers)."""
        from sqlalchemy import func, select

        from shared.service import runtime

        total = 0
        for name in ("dissemination", "outcomes"):
            rt = runtime(name)
            deliveries = rt.service.models.OutboxDelivery
            with rt.database.job_session() as session:
                total += (
                    session.scalar(select(func.count()).select_from(deliveries).where(deliveries.status == "pending"))
                    or 0
                )
        return total

    def check_running(self) -> None:
        for name, url in self.urls.items():
            try:
                ready = self.http.get(f"{url}/readyz", timeout=5)
            except requests.RequestException:
                raise NotRunning(f"the {name} service does not answer at {url}") from None
            if ready.status_code != 200:
                raise NotRunning(f"the {name} service at {url} is not ready: {ready.text[:300]}")

    # -- the steps -----------------------------------------------------------------------------
    def issue(self, step: Step, package: dict) -> None:
        created = self.post(
            "dissemination", "/api/v1/packages", "NCLCC", "issuer,admin", step.at, f"create-{step.package}", package
        )
        package_id = created["id"]
        self.package_ids[step.package] = package_id
        self.post(
            "dissemination",
            f"/api/v1/packages/{package_id}/issue",
            "NCLCC",
            "issuer,admin",
            step.at,
            f"issue-{step.package}",
        )
        rows = self.call(
            "GET", "dissemination", f"/api/v1/packages/{package_id}/disseminations", "NCLCC", "issuer"
        ).json()
        for row in rows:
            self.disseminations[step.package, row["organisation"]] = row["id"]
            self.due[row["id"]] = datetime.fromisoformat(row["due_at"])

    def dissemination(self, step: Step) -> str:
        key = (step.package, step.organisation)
        if key not in self.disseminations:  # passed on: made by the dissemination service from the event
            package_id = self.package_ids[step.package]

            def onward():
                chain = self.call("GET", "dissemination", f"/api/v1/packages/{package_id}/chain", "NCLCC", "issuer")
                links = [link for link in chain.json().get("links", []) if link["organisation"] == step.organisation]
                return links[0] if links else None

            link = self.wait(f"the pass-on to {step.organisation}", onward)
            self.disseminations[key] = link["dissemination_id"]
            self.due[link["dissemination_id"]] = datetime.fromisoformat(link["due_at"])
        return self.disseminations[key]

    def confirm_returns(self, ids: list[str]) -> None:
        """Wait until the outcomes service holds an expected return for each dissemination."""
        from sqlalchemy import select

        from services.outcomes.models import ExpectedReturn
        from shared.service import runtime

        wanted = {i for i in ids if i not in self.confirmed}
        if not wanted:
            return

        def present():
            with runtime("outcomes").database.job_session() as session:
                # UUIDs, not strings: SQLite's Uuid column binds only those.
                wanted_ids = [uuid.UUID(i) for i in wanted]
                found = {
                    str(i) for i in session.scalars(select(ExpectedReturn.id).where(ExpectedReturn.id.in_(wanted_ids)))
                }
            self.confirmed |= found
            return wanted <= self.confirmed

        self.wait("the outcomes service's expected returns", present)

    def acknowledge(self, step: Step) -> None:
        dissemination = self.dissemination(step)
        self.post(
            "dissemination",
            f"/api/v1/disseminations/{dissemination}/acknowledge",
            step.organisation,
            "recipient",
            step.at,
            f"ack-{step.package}-{step.organisation}",
        )

    def file(self, step: Step) -> None:
        dissemination = self.dissemination(step)
        self.confirm_returns([dissemination])
        self.post(
            "outcomes",
            f"/api/v1/returns/{dissemination}/outcomes",
            step.organisation,
            "recipient",
            step.at,
            f"{step.label}-{step.package}-{step.organisation}",
            step.body,
        )
        self.counts[step.label] += 1
        if "no_action" in step.body["actions"]:
            self.counts["no_action"] += 1
        if "passed_on" in step.body["actions"] and step.label == "final":
            self.counts["passed_on"] += 1

    def sweep(self, at: datetime) -> None:
        """The cron's chase sweep as of ``at``, its steps sent here at once as of ``at``."""
        from sqlalchemy import select

        from services.outcomes import chasing
        from services.outcomes.models import ChaseEntry
        from shared.service import runtime

        # The sweep must see every return whose ladder may have started (the earliest step is a
        # few days before the due date); later ones may still be on their way from the relay.
        self.confirm_returns([d for d, due in self.due.items() if due - LADDER_LEAD <= at])
        rt = runtime("outcomes")
        # Claimed at today's time (only ``now=at`` dates the sweep's decisions): a step claimed
        # "a year ago" and still pending would look lost to the cron's requeue, and the worker
        # would send it at today's date before it is sent below.
        with rt.database.job_session() as session:
            session.info = _WithoutJobs(session.info)  # the sends are made below, as of ``at``
            chasing.sweep(session, rt.settings, now=at)
        with rt.database.job_session() as session:
            pending = list(session.scalars(select(ChaseEntry.id).where(ChaseEntry.result == "pending")))
        with demo_clock(at):
            for entry_id in pending:
                with rt.database.job_session() as session:
                    session.info = _WithoutJobs(session.info)
                    result = chasing.send_chase(session, rt.settings, entry_id)
                if result.startswith("sent"):
                    self.counts["chase steps sent"] += 1

    def run(self, world: Plan) -> None:
        started = time.monotonic()
        month = ""
        issued = 0
        for step in world.steps:
            if f"{step.at:%Y-%m}" != month:
                if month:
                    self.progress(month, issued, len(world.packages), started)
                month = f"{step.at:%Y-%m}"
            if step.kind == "issue":
                self.issue(step, world.packages[step.package])
                issued += 1
            elif step.kind == "acknowledge":
                self.acknowledge(step)
            elif step.kind == "file":
                self.file(step)
            elif step.kind == "sweep":
                self.sweep(step.at)
        self.progress(month, issued, len(world.packages), started)

    def progress(self, month: str, issued: int, total: int, started: float) -> None:
        counts = self.counts
        print(
            f"  {month}: {issued}/{total} packages issued; returns so far {counts['interim']} interim, "
            f"{counts['final']} final, {counts['amendment']} amended; {counts['chase steps sent']} chase steps "
            f"({time.monotonic() - started:.0f} s)",
            file=self.out,
            flush=True,
        )

    def anchor(self, seed: int, count: int, now: datetime) -> Plan:
        """The world ending now, or, on a second run, the first run's (read back from its first
        package, which the replayed create names)."""
        world = plan(seed, count, now)
        first = next(step for step in world.steps if step.kind == "issue")
        self.anchor_key = f"create-{first.package}"
        created = self.call(
            "POST",
            "dissemination",
            "/api/v1/packages",
            "NCLCC",
            "issuer,admin",
            json=world.packages[first.package],
            headers={
                "Idempotency-Key": f"demo-{self.seed}-create-{first.package}",
                DEMO_CLOCK_HEADER: first.at.isoformat(),
            },
        )
        if created.status_code >= 400:
            raise RuntimeError(f"POST /api/v1/packages answered {created.status_code}: {created.text[:500]}")
        if not created.headers.get("Idempotent-Replayed"):
            self.anchor_fresh = True
            return world
        package = self.call(
            "GET", "dissemination", f"/api/v1/packages/{created.json()['id']}", "NCLCC", "issuer"
        ).json()
        if not package.get("issued_at"):
            return world
        shift = datetime.fromisoformat(package["issued_at"]) - first.at
        return plan(seed, count, now + shift) if shift else world


class _NoJobs(list):
    def append(self, callback) -> None:
        return None


class _WithoutJobs(dict):
    """A session's ``info`` under which ``shared.db.after_commit`` registers nothing: the jobs a
    commit would enqueue are dropped. The chase sends are made here, and the events wait in the
    outbox for the cron's outbox sweep once the cron is started again, so the load needs no Redis
    of its own (``make run``'s may be an embedded one on a port it chose). A dict, not a list in
    ``info``: a savepoint's end empties ``info["after_commit"]``."""

    def setdefault(self, key, default=None):
        return _NoJobs() if key == "after_commit" else super().setdefault(key, default)


def wait_for_metrics(loader: Loader, world: Plan, patience: float = 180, limit: float = 1800) -> dict:
    """The metrics service's summary once every event has reached it: waits while the worker
    makes progress (its queue holds every event of the load), and says so."""
    period = {"from": f"{world.end - YEAR:%Y-%m}", "to": f"{world.end:%Y-%m}"}
    wanted = sum(1 for step in world.steps if step.kind == "file" and step.at <= world.end)
    started = last_change = time.monotonic()
    seen: tuple = ()
    summary: dict = {}
    while time.monotonic() - started < limit:
        response = loader.call("GET", "metrics", "/api/v1/metrics/summary", "NCLCC", "leader", params=period)
        summary = response.json() if response.status_code == 200 else {}
        pending = loader.pending_events()
        now_seen = (summary.get("packages_issued"), json.dumps(summary.get("funnel")), pending)
        if pending == 0 and summary.get("packages_issued", 0) >= len(world.packages):
            return summary
        if now_seen != seen:
            if time.monotonic() - last_change > 15 or not seen:
                print(
                    f"  waiting for the metrics service: {pending} events still to deliver", file=loader.out, flush=True
                )
            seen, last_change = now_seen, time.monotonic()
        elif time.monotonic() - last_change > patience:
            break
        time.sleep(3)
    print(
        f"  note: the metrics service is still catching up ({wanted} returns filed); the dashboard fills in as it does"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load a year of demo history into the running system.")
    parser.add_argument("--packages", type=int, default=150, help="how many packages (default 150)")
    parser.add_argument("--seed", type=int, default=11, help="the random seed (default 11)")
    args = parser.parse_args(argv)
    if not 1 <= args.packages <= 2000:
        parser.error("--packages must be between 1 and 2000")
    settings = settings_for("dissemination")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the in-process sweeps' lines would drown the progress
    configure_logging("demo", settings)
    if settings.app_env == "production":
        print("make demo: refused, APP_ENV is production (the demo writes history).", file=sys.stderr)
        return 2
    loader = Loader(settings, args.seed)
    supervisorctl = Supervisorctl(Path(os.environ.get("RUN_DIR") or ROOT / "var" / "run").resolve())
    try:
        loader.check_running()
        supervisorctl("status", "cron")
    except NotRunning as problem:
        print(
            f"make demo: the system is not running ({problem}).\n"
            "Start it first with `make run` in another terminal, with the same DATABASE_URL, REDIS_URL, "
            "*_PORT and RUN_DIR settings, then run `make demo` again.",
            file=sys.stderr,
        )
        return 1
    now = datetime.now(UTC).replace(microsecond=0)
    world = loader.anchor(args.seed, args.packages, now)
    print(
        f"make demo: {len(world.packages)} packages from {world.end - YEAR:%d %b %Y} to {world.end:%d %b %Y} "
        f"(seed {args.seed}), {len(world.steps)} steps",
        flush=True,
    )
    started = time.monotonic()
    try:
        with supervisorctl.paused("cron"):
            loader.run(world)
    except (RuntimeError, NotRunning, requests.RequestException) as problem:
        print(
            f"make demo stopped: {problem}\nRun it again when the system is well: what was loaded is "
            "replayed, not made twice, and it carries on from there.",
            file=sys.stderr,
        )
        return 1
    summary = wait_for_metrics(loader, world)
    counts = loader.counts
    print(f"\nLoaded in {time.monotonic() - started:.0f} s:")
    print(f"  {counts['created']} requests made something new, {counts['replayed']} were replays of an earlier run")
    print(
        f"  {len(world.packages)} packages; returns: {counts['interim']} interim, {counts['final']} final, "
        f"{counts['amendment']} amendments, {counts['no_action']} no action, {counts['passed_on']} passed on; "
        f"{counts['chase steps sent']} chase steps sent"
    )
    if summary:
        funnel, rates = summary.get("funnel", {}), summary.get("rates", {})
        print("  the metrics service counts: " + ", ".join(f"{stage} {number}" for stage, number in funnel.items()))
        print("  rates: " + ", ".join(f"{name} {value:.0%}" for name, value in rates.items() if value is not None))
        months = [row for row in summary.get("trend", []) if row.get("packages") or row.get("returned")]
        print(f"  {len(months)} months with packages in the trend")
    print(f"\nOpen {loader.urls['metrics']}/dashboard and sign in with `make -s token ORG=NCLCC ROLE=leader`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
