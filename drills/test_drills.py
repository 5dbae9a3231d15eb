"""The fault drills of issue 9, in order, against one running system (drills/conftest.py).

Each starts a steady load of its own packages, injects its fault while the load and the chase
ladders are under way, lets the system heal by itself (no hand restarts: the supervisor and the
sweeps do it), then waits, bounded, until its counts add up across the three services and
asserts that nothing was lost or doubled (drills/checks.py). Each prints its figures at the end.
"""

from __future__ import annotations

import signal
import time

import pytest

from drills.checks import settle
from drills.load import Ledger, Load
from drills.processes import PROGRAMS
from drills.receiver import wait_until
from drills.report import Report, Section
from drills.system import SERVICES, System

# The ladder ends 23 s after a package is issued; a drill settles well within this.
SETTLE_WITHIN = 120.0


def ready_now(system: System) -> None:
    """Every drill starts from a healthy system, or says why it cannot."""
    if system.process is None or system.process.poll() is not None:
        pytest.fail(f"make run is not running any more (an earlier drill stopped it):\n{system.log_tail(2000)}")
    if not wait_until(lambda: all(system.readyz(s) == 200 for s in SERVICES), timeout=60, every=0.5):
        states = {s: system.readyz(s) for s in SERVICES}
        pytest.fail(f"the system is not ready before the drill: /readyz {states}\n{system.log_tail(2000)}")


def pids(system: System) -> dict[str, int | None]:
    return {name: system.control.pid(name) for name in PROGRAMS}


def restarts(before: dict[str, int | None], after: dict[str, int | None]) -> str:
    changed = [name for name in PROGRAMS if before[name] != after[name]]
    return ", ".join(changed) if changed else "none"


def seconds_until_ready(system: System, within: float = 60.0) -> str:
    started = time.monotonic()
    ok = wait_until(lambda: all(system.readyz(s) == 200 for s in SERVICES), timeout=within, every=0.25)
    return f"{time.monotonic() - started:.1f}" if ok else f"not within {within:.0f}"


def finish(
    system: System,
    ledger: Ledger,
    report: Report,
    drill: str,
    title: str,
    fault: list[tuple[str, str]],
    before: dict[str, int | None],
    retries_before: int,
) -> None:
    counts, problems, waited = settle(system, ledger, drill, SETTLE_WITHIN)
    orphans = system.control.orphans(system.marker)
    load_errors = [error for error in ledger.errors if error.startswith(f"{drill}:")]
    fault = [
        *fault,
        ("restarts seen (pid changed)", restarts(before, pids(system))),
        ("orphaned processes", str(len(orphans)) + (f": {'; '.join(orphans)}" if orphans else "")),
        ("client retries (same Idempotency-Key)", str(system.api.retries - retries_before)),
        ("settled after load (s)", f"{waited:.1f}"),
    ]
    everything = load_errors + problems + [f"orphaned process: {o}" for o in orphans]
    report.add(Section(title, fault, counts.table(), counts.event_table(), everything))
    print(f"drill {drill}: {'settled' if not everything else f'{len(everything)} problems'} after {waited:.1f} s")
    assert not load_errors, "the load failed:\n" + "\n".join(load_errors[:20])
    assert not orphans, f"processes left outside the supervisor: {orphans}"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])


def test_1_redis_stopped_mid_load_and_mid_ladder(system: System, ledger: Ledger, report: Report):
    ready_now(system)
    before, retries = pids(system), system.api.retries
    load = Load(system, ledger, "redis", packages=8, every=2.5).start()
    time.sleep(9)  # the first packages' ladders are under way: reminders sent, due dates close
    system.redis.stop()
    stopped = time.monotonic()
    print("drill redis: redis-server stopped")
    not_ready = wait_until(lambda: all(system.readyz(s) == 503 for s in SERVICES), timeout=10, every=0.5)
    time.sleep(max(0.0, 15 - (time.monotonic() - stopped)))
    system.redis.start()
    down = time.monotonic() - stopped
    print(f"drill redis: redis-server back after {down:.1f} s")
    ready_again = seconds_until_ready(system)
    load.join()
    finish(
        system,
        ledger,
        report,
        "redis",
        "1. Redis stopped 15 s mid-load and mid-ladder",
        [
            ("Redis down (s)", f"{down:.1f}"),
            ("/readyz 503 while Redis was down", "yes" if not_ready else "no"),
            ("ready again after Redis returned (s)", ready_again),
            ("packages issued / filings", f"{load.issued} / {load.filed}"),
        ],
        before,
        retries,
    )


def test_2_worker_killed_mid_job(system: System, ledger: Ledger, report: Report):
    ready_now(system)
    before, retries = pids(system), system.api.retries
    load = Load(system, ledger, "worker", packages=6, every=2.5).start()
    time.sleep(2)
    # The next webhook is held open: the worker is in the middle of a notification job when killed.
    system.receiver.hold_next(8)
    held = system.receiver.wait_holding(30)
    killed = system.control.kill("worker", signal.SIGKILL)
    system.receiver.release()
    _, first_restart = system.control.wait_running("worker", not_pid=killed, timeout=60)
    print(f"drill worker: killed {killed} mid-webhook ({held}), running again after {first_restart:.1f} s")
    time.sleep(3)
    # And once more at whatever moment it is, under load.
    again = system.control.kill("worker", signal.SIGKILL)
    _, second_restart = system.control.wait_running("worker", not_pid=again, timeout=60)
    load.join()
    finish(
        system,
        ledger,
        report,
        "worker",
        "2. Worker killed with SIGKILL mid-job (twice)",
        [
            ("killed mid-webhook", "yes" if held else "no (no webhook in flight within 30 s)"),
            ("worker running again after kill 1 / kill 2 (s)", f"{first_restart:.1f} / {second_restart:.1f}"),
            ("packages issued / filings", f"{load.issued} / {load.filed}"),
        ],
        before,
        retries,
    )


def test_3_cron_killed(system: System, ledger: Ledger, report: Report):
    ready_now(system)
    before, retries = pids(system), system.api.retries
    load = Load(system, ledger, "cron", packages=6, every=2.5).start()
    restarted = []
    for pause in (6, 8):  # mid-ladder for the first packages, then again
        time.sleep(pause)
        killed = system.control.kill("cron", signal.SIGKILL)
        _, seconds = system.control.wait_running("cron", not_pid=killed, timeout=60)
        restarted.append(f"{seconds:.1f}")
    load.join()
    finish(
        system,
        ledger,
        report,
        "cron",
        "3. Cron killed with SIGKILL (twice) mid-ladder",
        [
            ("cron running again after each kill (s)", " / ".join(restarted)),
            ("packages issued / filings", f"{load.issued} / {load.filed}"),
        ],
        before,
        retries,
    )


def pending_to(system: System, subscriber: str) -> set[tuple[str, int]]:
    """The deliveries to ``subscriber`` still pending, over both sources."""
    return {
        (source, row[0])
        for source in ("dissemination", "outcomes")
        for row in system.store.rows(
            source, "SELECT id FROM {outbox_deliveries} WHERE subscriber = :s AND status = 'pending'", s=subscriber
        )
    }


CATCH_UP_BOUND = 10.0


def test_4_metrics_down_then_back(system: System, ledger: Ledger, report: Report):
    ready_now(system)
    before, retries = pids(system), system.api.retries
    load = Load(system, ledger, "metrics", packages=8, every=2.5).start()
    time.sleep(3)
    system.control.stop("metrics")
    stopped = time.monotonic()
    print("drill metrics: metrics service stopped")
    time.sleep(25)
    system.control.start("metrics")
    wait_until(lambda: system.readyz("metrics") is not None, timeout=30, every=0.1)
    back = time.monotonic()
    down = back - stopped
    waiting = pending_to(system, "metrics")
    caught_up = wait_until(lambda: not (waiting & pending_to(system, "metrics")), timeout=90, every=0.25)
    catch_up = time.monotonic() - back
    print(f"drill metrics: back after {down:.1f} s, {len(waiting)} deliveries waiting, caught up in {catch_up:.1f} s")
    load.join()
    fault = [
        ("metrics down (s)", f"{down:.1f}"),
        ("deliveries waiting for it when back", str(len(waiting))),
        ("caught up after its return (s)", f"{catch_up:.1f}" if caught_up else f"not within {catch_up:.0f}"),
        ("packages issued / filings", f"{load.issued} / {load.filed}"),
    ]
    try:
        finish(system, ledger, report, "metrics", "4. Metrics service down 25 s, then back", fault, before, retries)
    finally:
        assert caught_up and catch_up < CATCH_UP_BOUND, (
            f"the metrics service caught up {catch_up:.1f} s after its return "
            f"({len(waiting)} deliveries waiting); bound {CATCH_UP_BOUND:.0f} s"
        )


def test_5_database_connections_terminated(system: System, ledger: Ledger, report: Report):
    if not system.store.on_postgres:
        pytest.skip("database connections are terminated with pg_terminate_backend: PostgreSQL only (no DATABASE_URL)")
    ready_now(system)
    before, retries = pids(system), system.api.retries
    load = Load(system, ledger, "database", packages=8, every=2.5).start()
    time.sleep(2)
    rounds, terminated = 0, 0
    until = time.monotonic() + 16
    while time.monotonic() < until:
        terminated += system.store.terminate_backends()
        rounds += 1
        time.sleep(1.5)
    print(f"drill database: {terminated} backends terminated in {rounds} rounds")
    ready_again = seconds_until_ready(system)
    load.join()
    finish(
        system,
        ledger,
        report,
        "database",
        "5. Database connections terminated (pg_terminate_backend every 1.5 s for 16 s)",
        [
            ("rounds / backends terminated", f"{rounds} / {terminated}"),
            ("ready after the last round (s)", ready_again),
            ("packages issued / filings", f"{load.issued} / {load.filed}"),
        ],
        before,
        retries,
    )


def test_6_readiness_while_the_worker_is_stopped(system: System, report: Report):
    ready_now(system)
    system.control.stop("worker")
    stopped = time.monotonic()
    went_503 = wait_until(lambda: all(system.readyz(s) == 503 for s in SERVICES), timeout=45, every=0.25)
    to_503 = time.monotonic() - stopped
    seen = {s: system.readyz(s) for s in SERVICES}
    system.control.start("worker")
    started = time.monotonic()
    went_200 = wait_until(lambda: all(system.readyz(s) == 200 for s in SERVICES), timeout=45, every=0.25)
    to_200 = time.monotonic() - started
    fault = [
        ("/readyz while the worker was stopped", ", ".join(f"{s} {code}" for s, code in seen.items())),
        ("503 after the stop (s)", f"{to_503:.1f}" if went_503 else f"not within {to_503:.0f}"),
        ("200 after the start (s)", f"{to_200:.1f}" if went_200 else f"not within {to_200:.0f}"),
    ]
    report.add(Section("6. Readiness while the worker is stopped", fault))
    assert went_503, f"/readyz did not answer 503 on every service while the worker was stopped: {seen}"
    assert went_200, "/readyz did not answer 200 again within 45 s of the worker's start"
