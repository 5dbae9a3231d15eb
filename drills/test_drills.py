"""The fault drills of issue 9, in order, against one running system (drills/conftest.py).

Each starts a steady load of its own packages, injects its fault while the load and the chase
ladders are under way, lets the system heal by itself (no hand restarts: the supervisor and the
sweeps do it), then waits, bounded, until its counts add up across the three services and
asserts that nothing was lost or doubled (drills/checks.py). Each prints its figures at the end.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from drills.checks import settle
from drills.load import Ledger, Load
from drills.processes import PROGRAMS
from drills.receiver import wait_until
from drills.report import Report, Section
from drills.system import SERVICES, QueueWatch, System

# On an idle machine a drill's counts add up within seconds of its ladders' end (23 s after its
# last package); the bound stops a system that never heals, on a machine crowded with other work.
SETTLE_WITHIN = 240.0
# How soon after a consumer is back every delivery that waited for it must be delivered: seconds,
# not the relay's next retry (60 s by then). DRILL_CATCH_UP_SECONDS loosens it for a slow machine.
CATCH_UP_BOUND = float(os.environ.get("DRILL_CATCH_UP_SECONDS", "10"))
PACKAGES = 5
EVERY = 3.0
# No drill starts this long after the first one did: a run where everything goes wrong still ends.
BUDGET = float(os.environ.get("DRILL_BUDGET_SECONDS", "900"))
_FIRST_STARTED: list[float] = []


def ready_now(system: System) -> None:
    """Every drill starts from a healthy system, within the run's budget, or says why it cannot."""
    _FIRST_STARTED[:] = _FIRST_STARTED or [time.monotonic()]
    if time.monotonic() - _FIRST_STARTED[0] > BUDGET:
        pytest.fail(f"not started: the drills' budget of {BUDGET:.0f} s is spent (DRILL_BUDGET_SECONDS)")
    if not system.alive():
        pytest.fail(f"make run is not running any more (an earlier drill stopped it):\n{system.log_tail(2000)}")
    if not wait_until(lambda: all_ready(system), timeout=120, every=0.5):
        states = {s: system.readyz(s) for s in SERVICES}
        pytest.fail(f"the system is not ready before the drill: /readyz {states}\n{system.log_tail(2000)}")


def all_ready(system: System) -> bool:
    return all(system.readyz(s) == 200 for s in SERVICES)


def seconds_until_ready(system: System, within: float = 120.0) -> str:
    started = time.monotonic()
    ok = wait_until(lambda: all_ready(system), timeout=within, every=0.25)
    return f"{time.monotonic() - started:.1f}" if ok else f"not within {within:.0f}"


def pids(system: System) -> dict[str, int | None]:
    return {name: system.control.pid(name) for name in PROGRAMS}


def restarts(before: dict[str, int | None], after: dict[str, int | None]) -> str:
    changed = [name for name in PROGRAMS if before[name] != after[name]]
    return ", ".join(changed) if changed else "none"


class Drill:
    """One drill's bookkeeping: its name and title, the figures of its fault, what the system
    looked like before it, and the queue watch while it runs."""

    def __init__(self, system: System, ledger: Ledger, report: Report, name: str, title: str):
        self.system, self.ledger, self.report = system, ledger, report
        self.name, self.title = name, title
        self.fault: list[tuple[str, str]] = []
        ready_now(system)
        self.before = pids(system)
        self.retries = system.api.retries
        self.watch = QueueWatch(system).__enter__()

    def load(self, packages: int = PACKAGES, every: float = EVERY) -> Load:
        return Load(self.system, self.ledger, self.name, packages, every).start()

    def note(self, figure: str, value: str) -> None:
        self.fault.append((figure, value))

    def finish(self, load: Load) -> None:
        """Wait for the load and for the counts to add up; print and assert."""
        load.join()
        system = self.system
        counts, problems, waited = settle(system, self.ledger, self.name, SETTLE_WITHIN)
        self.watch.__exit__()
        orphans = system.control.orphans(system.marker)
        load_errors = [error for error in self.ledger.errors if error.startswith(f"{self.name}:")]
        fault = [
            *self.fault,
            ("packages issued / filings", f"{load.issued} / {load.filed}"),
            self.watch.figure(),
            ("restarts seen (pid changed)", restarts(self.before, pids(system))),
            ("orphaned processes", str(len(orphans)) + (f": {'; '.join(orphans)}" if orphans else "")),
            ("client retries (same Idempotency-Key)", str(system.api.retries - self.retries)),
            ("counts added up after the load (s)", f"{waited:.1f}" if not problems else f"not within {waited:.0f}"),
        ]
        everything = load_errors + problems + [f"orphaned process: {o}" for o in orphans]
        self.report.add(Section(self.title, fault, counts.table(), counts.event_table(), everything))
        verdict = "added up" if not everything else f"{len(everything)} problems"
        print(f"drill {self.name}: {verdict} {waited:.1f} s after the load")
        assert not load_errors, "the load failed:\n" + "\n".join(load_errors[:20])
        assert not orphans, f"processes left outside the supervisor: {orphans}"
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])


def test_1_redis_stopped_mid_load_and_mid_ladder(system: System, ledger: Ledger, report: Report):
    drill = Drill(system, ledger, report, "redis", "1. Redis stopped 15 s mid-load and mid-ladder")
    load = drill.load(packages=6)
    time.sleep(10)  # the first packages' reminders are out, their due dates close
    system.redis.stop()
    stopped = time.monotonic()
    print("drill redis: redis-server stopped")
    not_ready = wait_until(lambda: all(system.readyz(s) == 503 for s in SERVICES), timeout=10, every=0.5)
    time.sleep(max(0.0, 15 - (time.monotonic() - stopped)))
    system.redis.start()
    down = time.monotonic() - stopped
    print(f"drill redis: redis-server back after {down:.1f} s")
    drill.note("Redis down (s)", f"{down:.1f}")
    drill.note("/readyz 503 on every service while Redis was down", "yes" if not_ready else "no")
    drill.note("ready again after Redis returned (s)", seconds_until_ready(system))
    drill.finish(load)


def test_2_worker_killed_mid_job(system: System, ledger: Ledger, report: Report):
    drill = Drill(system, ledger, report, "worker", "2. Worker killed with SIGKILL mid-job, twice")
    load = drill.load()
    time.sleep(2)
    # The next webhook is held open: the worker is in the middle of a notification job when killed.
    system.receiver.hold_next(10)
    held = system.receiver.wait_holding(60)
    killed = system.control.kill("worker", signal.SIGKILL)
    system.receiver.release()
    _, restarted = system.control.wait_running("worker", not_pid=killed, timeout=60)
    print(f"drill worker: killed {killed} {'mid-webhook' if held else 'with no webhook in flight'}")
    drill.note("killed mid-webhook (a notification on the wire)", "yes" if held else "no: none in flight within 60 s")
    drill.note("kill 1: running again / ready again after (s)", f"{restarted:.1f} / {seconds_until_ready(system)}")
    # And once more, at whatever moment it is, under load.
    time.sleep(2)
    again = system.control.kill("worker", signal.SIGKILL)
    _, restarted = system.control.wait_running("worker", not_pid=again, timeout=60)
    drill.note("kill 2: running again / ready again after (s)", f"{restarted:.1f} / {seconds_until_ready(system)}")
    drill.finish(load)


def test_3_cron_killed(system: System, ledger: Ledger, report: Report):
    drill = Drill(system, ledger, report, "cron", "3. Cron killed with SIGKILL twice, mid-ladder")
    load = drill.load()
    restarted = []
    for pause in (8, 8):  # mid-ladder for the first packages, then again
        time.sleep(pause)
        killed = system.control.kill("cron", signal.SIGKILL)
        _, seconds = system.control.wait_running("cron", not_pid=killed, timeout=60)
        restarted.append(f"{seconds:.1f}")
    drill.note("cron running again after each kill (s)", " / ".join(restarted))
    drill.finish(load)


def pending_to(system: System, subscriber: str) -> set[tuple[str, int]]:
    """The deliveries to ``subscriber`` still pending, over both sources."""
    return {
        (source, row[0])
        for source in ("dissemination", "outcomes")
        for row in system.store.rows(
            source, "SELECT id FROM {outbox_deliveries} WHERE subscriber = :s AND status = 'pending'", s=subscriber
        )
    }


def test_4_metrics_down_then_back(system: System, ledger: Ledger, report: Report):
    drill = Drill(system, ledger, report, "metrics", "4. Metrics service down 25 s, then back")
    load = drill.load()
    time.sleep(3)
    system.control.stop("metrics")
    stopped = time.monotonic()
    print("drill metrics: metrics service stopped")
    time.sleep(max(0.0, 25 - (time.monotonic() - stopped)))
    # What is waiting for it is read before it starts: it may take them all in the moment
    # between answering its first event and answering the readiness probe this waits on.
    waiting = pending_to(system, "metrics")
    assert waiting, "nothing waited for the metrics service while it was down: the load sent nothing"
    started = time.monotonic()
    system.control.start("metrics")  # returns once supervisord has seen it running a few seconds
    wait_until(lambda: system.readyz("metrics") is not None, timeout=120, every=0.1)
    back = time.monotonic()
    first = wait_until(lambda: len(waiting & pending_to(system, "metrics")) < len(waiting), timeout=120, every=0.2)
    first_after = time.monotonic() - back
    caught_up = wait_until(lambda: not (waiting & pending_to(system, "metrics")), timeout=120, every=0.2)
    catch_up = time.monotonic() - back
    print(
        f"drill metrics: back after {back - stopped:.1f} s, {len(waiting)} deliveries waiting, all in {catch_up:.1f} s"
    )
    drill.note("metrics down, stop to answering again (s)", f"{back - stopped:.1f}")
    drill.note("deliveries waiting for it when back", str(len(waiting)))
    drill.note("first of them delivered after its return (s)", f"{first_after:.1f}" if first else "none within 120")
    drill.note(
        f"all of them delivered after its return (s; bound {CATCH_UP_BOUND:.0f})",
        f"{catch_up:.1f}" if caught_up else "not within 120",
    )
    drill.note("asked to start to its readiness probe answering (s)", f"{back - started:.1f}")
    try:
        drill.finish(load)
    finally:
        assert caught_up and catch_up < CATCH_UP_BOUND, (
            f"the metrics service caught up {catch_up:.1f} s after its return "
            f"({len(waiting)} deliveries waiting); bound {CATCH_UP_BOUND:.0f} s"
        )


def test_5_database_connections_terminated(system: System, ledger: Ledger, report: Report):
    if not system.store.on_postgres:
        pytest.skip("database connections are cut with pg_terminate_backend: PostgreSQL only (no DATABASE_URL)")
    drill = Drill(
        system, ledger, report, "database", "5. Database connections terminated (every 1.5 s for 16 s, under load)"
    )
    load = drill.load()
    time.sleep(2)
    rounds, terminated = 0, 0
    until = time.monotonic() + 16
    while time.monotonic() < until:
        terminated += system.store.terminate_backends()
        rounds += 1
        time.sleep(1.5)
    print(f"drill database: {terminated} backends terminated in {rounds} rounds")
    drill.note("rounds / backends terminated", f"{rounds} / {terminated}")
    drill.note("ready after the last round (s)", seconds_until_ready(system))
    drill.finish(load)


def test_6_readiness_while_the_worker_is_stopped(system: System, report: Report):
    ready_now(system)
    system.control.stop("worker")
    stopped = time.monotonic()
    went_503 = wait_until(lambda: all(system.readyz(s) == 503 for s in SERVICES), timeout=60, every=0.25)
    to_503 = time.monotonic() - stopped
    seen = {s: system.readyz(s) for s in SERVICES}
    system.control.start("worker")
    started = time.monotonic()
    went_200 = wait_until(lambda: all_ready(system), timeout=120, every=0.25)
    to_200 = time.monotonic() - started
    fault = [
        ("/readyz while the worker was stopped", ", ".join(f"{s} {code}" for s, code in seen.items())),
        ("503 on every service after the stop (s)", f"{to_503:.1f}" if went_503 else f"not within {to_503:.0f}"),
        ("200 on every service after the start (s)", f"{to_200:.1f}" if went_200 else f"not within {to_200:.0f}"),
    ]
    report.add(Section("6. Readiness while the worker is stopped", fault))
    assert went_503, f"/readyz did not answer 503 on every service while the worker was stopped: {seen}"
    assert went_200, "/readyz did not answer 200 again within 120 s of the worker's start"
