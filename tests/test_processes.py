"""The worker and the cron process ride out their dependencies, as real processes on a Redis of
the test's own that the test stops and starts again; they exit non-zero when they really fail."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry

from shared.outbox import sweep_outbox
from shared.queue import redis_connection
from tests.processes import PrivateRedis, Process, TcpProxy, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_redis():
    redis = PrivateRedis().start()
    yield redis
    redis.stop()


def process_env(redis_url: str, **extra: str) -> dict[str, str]:
    # The test's database (PostgreSQL schemas or SQLite files, migrated by the `migrated`
    # fixture) and the test's own Redis.
    return {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **extra}


def finished(redis_url: str, job_id: str) -> bool:
    job = Job.fetch(job_id, connection=redis_connection(redis_url))
    status = job.get_status()
    assert status != JobStatus.FAILED, job.latest_result().exc_string if job.latest_result() else job_id
    return status == JobStatus.FINISHED


def test_worker_and_cron_ride_out_a_redis_outage(migrated, private_redis, tmp_path):
    env = process_env(private_redis.url, OUTBOX_SWEEP_SECONDS="1", CHASE_SWEEP_SECONDS="1")
    worker = Process.services("worker", env, tmp_path / "worker.log")
    cron = Process.services("cron", env, tmp_path / "cron.log")
    try:
        worker.wait_for_output("scheduler: moving due jobs of")
        cron.wait_for_output("scheduling")
        connection = redis_connection(private_redis.url)
        wait_for(lambda: FinishedJobRegistry("outcomes", connection=connection).count, what="a first sweep")

        private_redis.stop()
        time.sleep(5)
        assert worker.popen.poll() is None and cron.popen.poll() is None
        private_redis.start()  # empty: everything Redis held is gone

        # The worker runs a job enqueued now, and its scheduler moves a delayed one when due.
        connection = redis_connection(private_redis.url)
        queue = Queue("dissemination", connection=connection)
        now = queue.enqueue(sweep_outbox, "dissemination")
        later = queue.enqueue_in(timedelta(seconds=1), sweep_outbox, "dissemination")
        wait_for(lambda: finished(private_redis.url, now.id), timeout=30, what="the job enqueued after the outage")
        wait_for(lambda: finished(private_redis.url, later.id), timeout=30, what="the delayed job")
        # The cron process enqueues its sweeps again, and the worker runs them.
        wait_for(lambda: FinishedJobRegistry("outcomes", connection=connection).count, timeout=30, what="a cron sweep")
        # The worker is listed again (readiness checks read RQ's registry of workers).
        from rq import Worker

        assert len(Worker.all(connection=connection)) == 1

        # One line when Redis went, one when it came back: not one per try.
        for process in (worker, cron):
            assert len(process.lines_with("redis unreachable")) == 1, process.output
            assert len(process.lines_with("redis back after")) == 1, process.output
            assert "Traceback" not in process.output, process.output
    finally:
        for process in (worker, cron):
            process.signal(signal.SIGTERM)
        codes = [process.wait(timeout=20) for process in (worker, cron)]
        for process in (worker, cron):
            process.close()
    assert codes == [0, 0]


def test_worker_waits_for_a_redis_that_is_not_up_yet(migrated, private_redis, tmp_path):
    private_redis.stop()
    worker = Process.services("worker", process_env(private_redis.url), tmp_path / "worker.log")
    try:
        worker.wait_for_output("redis unreachable")
        private_redis.start()
        worker.wait_for_output("redis back after")
        job = Queue("dissemination", connection=redis_connection(private_redis.url)).enqueue(
            sweep_outbox, "dissemination"
        )
        wait_for(lambda: finished(private_redis.url, job.id), timeout=30, what="the job")
        worker.signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0
    finally:
        worker.close()


@pytest.mark.parametrize("command", ["worker", "cron"])
def test_a_refused_redis_password_is_a_failure_not_an_outage(migrated, tmp_path, command):
    """Waiting cannot mend a wrong password: the process exits non-zero, for its supervisor to
    report (and an operator to fix), instead of waiting for ever."""
    redis = PrivateRedis(extra_args=("--requirepass", "the-right-one")).start()
    url = f"redis://:a-wrong-one@127.0.0.1:{redis.port}/0"
    process = Process.services(command, process_env(url), tmp_path / f"{command}.log")
    try:
        code = process.wait(timeout=45)
    finally:
        process.close()
        redis.stop()
    assert code != 0
    assert "invalid username-password pair" in process.output or "WRONGPASS" in process.output
    assert "redis unreachable" not in process.output


def test_worker_rides_out_a_database_outage(migrated, private_redis, tmp_path):
    """Jobs fail while the database is away (RQ retries them, the sweeps catch up); the worker
    runs on, says so once, and runs the next job once the database is back."""
    from sqlalchemy.engine import make_url

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("a database server to lose: PostgreSQL (SQLite is a file)")
    proxy = TcpProxy(make_url(url).port or 5432).start()
    env = process_env(private_redis.url, DATABASE_URL=make_url(url).set(port=proxy.port).render_as_string(False))
    worker = Process.services("worker", env, tmp_path / "worker.log")
    queue = Queue("dissemination", connection=redis_connection(private_redis.url))
    try:
        worker.wait_for_output("listening on")
        proxy.stop()
        failing = [queue.enqueue(sweep_outbox, "dissemination") for _ in range(3)]

        def failed(job_id):
            return Job.fetch(job_id, connection=redis_connection(private_redis.url)).get_status() == JobStatus.FAILED

        wait_for(lambda: all(failed(job.id) for job in failing), timeout=30, what="the jobs failing")
        assert worker.popen.poll() is None
        proxy.start()
        job = queue.enqueue(sweep_outbox, "dissemination")
        wait_for(lambda: finished(private_redis.url, job.id), timeout=30, what="a job after the outage")
        assert len(worker.lines_with("database unreachable")) == 1, worker.output
        assert len(worker.lines_with("database back after")) == 1, worker.output
        assert "Traceback" not in worker.output, worker.output
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        worker.close()
        proxy.stop()
