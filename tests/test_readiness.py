"""``/readyz`` tells the truth: 503 while the service cannot do its job (no live worker on its
queues, its outbox sweep stale, the database or Redis away), 200 when it can, and each check
says which."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from shared.devredis import free_port
from shared.health import record_sweep
from shared.settings import ROOT


def readiness(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()["checks"]


def failing(checks: dict) -> set[str]:
    return {name for name, check in checks.items() if not check["ok"]}


def test_no_worker_is_not_ready_and_says_so(client):
    status, checks = readiness(client)
    assert status == 503
    assert failing(checks) == {"workers"}
    assert "no live worker on dissemination, events" in checks["workers"]["detail"]


def test_a_worker_with_a_fresh_heartbeat_makes_it_ready(client, live_worker):
    status, checks = readiness(client)
    assert status == 200, checks
    assert checks["workers"]["detail"] == "live workers dissemination: 1, events: 1"


def test_a_worker_on_the_other_queues_only_is_not_enough(client, redis_conn):
    from rq import SimpleWorker

    worker = SimpleWorker(["dissemination", "outcomes", "metrics"], connection=redis_conn)
    worker.register_birth()
    try:
        status, checks = readiness(client)
    finally:
        worker.register_death()
    assert status == 503
    assert "no live worker on events" in checks["workers"]["detail"]


def test_an_idle_worker_whose_heartbeat_stopped_is_not_live(client, live_worker, redis_conn):
    """What a worker on another machine that died leaves: its key, with an old heartbeat."""
    from datetime import UTC, datetime, timedelta

    from rq.utils import utcformat

    from shared.queue import WORKER_TTL

    old = datetime.now(UTC) - timedelta(seconds=WORKER_TTL + 5)
    redis_conn.hset(live_worker.key, mapping={"last_heartbeat": utcformat(old), "hostname": "elsewhere"})
    status, checks = readiness(client)
    assert status == 503 and failing(checks) == {"workers"}


def test_a_stale_sweep_is_not_ready_and_a_fresh_one_is(app, client, live_worker, redis_conn):
    interval = app.extensions["settings"].outbox_sweep_seconds
    # The process started long ago; the last sweep was 3 intervals and a bit back.
    app.extensions["started_at"] = time.time() - 10 * interval
    record_sweep(redis_conn, "dissemination", at=time.time() - 3 * interval - 5)
    status, checks = readiness(client)
    assert status == 503 and failing(checks) == {"sweep"}
    assert f"stale after {3 * interval} s" in checks["sweep"]["detail"]

    from shared.outbox import sweep_outbox

    sweep_outbox("dissemination")  # the cron job records its own sweep
    status, checks = readiness(client)
    assert status == 200, checks


def test_no_sweep_since_start_is_forgiven_for_three_intervals_only(app, client, live_worker):
    interval = app.extensions["settings"].outbox_sweep_seconds
    status, checks = readiness(client)  # just started, never swept: not yet a fault
    assert status == 200 and "no sweep since this process started" in checks["sweep"]["detail"]
    app.extensions["started_at"] = time.time() - 3 * interval - 5
    status, checks = readiness(client)
    assert status == 503 and failing(checks) == {"sweep"}


def test_a_service_that_sends_no_events_needs_no_sweep_and_no_events_worker(metrics_client, redis_conn):
    from rq import SimpleWorker

    worker = SimpleWorker(["metrics"], connection=redis_conn)
    worker.register_birth()
    try:
        status, checks = readiness(metrics_client)
    finally:
        worker.register_death()
    assert status == 200, checks
    assert checks["sweep"]["detail"] == "no outbox sweep scheduled for this service"


def test_redis_and_database_away_are_not_ready():
    from services.dissemination import create_app

    nothing = free_port()  # nothing listens here
    app = create_app(
        {
            "settings": {
                "testing": True,
                "redis_url": f"redis://127.0.0.1:{nothing}/0",
                "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{nothing}/nothing",
                "database_schema": "dissemination",
            }
        }
    )
    status, checks = readiness(app.test_client())
    assert status == 503
    assert failing(checks) == {"database", "redis", "workers", "sweep"}
    assert checks["redis"]["detail"] == "unavailable: ConnectionError"
    assert checks["database"]["detail"].startswith("unavailable: ")
    assert "127.0.0.1" not in str(checks) and str(nothing) not in str(checks)


WORKER = (
    "import services, sys; from rq import SimpleWorker; from shared.queue import redis_connection; "
    "SimpleWorker(sys.argv[1:], connection=redis_connection(__import__('os').environ['REDIS_URL']))"
    ".work(with_scheduler=False)"
)


def test_readiness_turns_503_when_the_worker_is_killed_and_200_when_one_is_back(client, redis_conn):
    def start_worker():
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, "dissemination", "outcomes", "metrics", "events"],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_for_status(wanted: int) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, checks = readiness(client)
            if status == wanted:
                return checks
            time.sleep(0.1)
        pytest.fail(f"/readyz never answered {wanted}: {checks}")

    worker = start_worker()
    try:
        wait_for_status(200)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        # Its key stays in Redis with a fresh heartbeat; its process is gone, and readiness sees it.
        assert redis_conn.keys("rq:worker:*")
        status, checks = readiness(client)
        assert status == 503 and failing(checks) == {"workers"}
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    worker = start_worker()
    try:
        wait_for_status(200)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
