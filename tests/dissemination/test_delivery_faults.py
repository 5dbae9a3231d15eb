"""Deliveries through faults, against the real outcomes service's inbox on a loopback port: a relay
whose worker is SIGKILLed mid-POST is sent again by the next sweep, and a subscriber that was down
gets its waiting deliveries as soon as it answers again, not at its next retry; each event is
applied exactly once."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from shared import catchup, outbox
from shared.service import Runtime, set_runtime
from shared.settings import ROOT


class Subscriber:
    """The real outcomes app on a loopback port, behind a switch: ``up`` (serves), ``down``
    (503 to everything, /healthz included), ``sick`` (/healthz 200, events 503: its database is
    away). ``hang_next_event`` holds the next event POST unanswered until ``release`` is set."""

    def __init__(self, app):
        self.app = app
        self.state = "up"
        self.posts = 0
        self.batches: list[int] = []  # events in each POST to /internal/events/batch
        self.hang_next_event = False
        self.refused: set[str] = set()  # event ids answered 422, as a bug in its handler would
        self.hanging = threading.Event()
        self.release = threading.Event()
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __call__(self, environ, start_response):
        is_event = environ["PATH_INFO"] == "/internal/events"
        if is_event:
            self.posts += 1
        if environ["PATH_INFO"] == "/internal/events/batch" and self.state == "up":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.batches.append(len(json.loads(body)["events"]))
        if is_event and self.hang_next_event:
            self.hang_next_event = False
            self.hanging.set()
            self.release.wait(timeout=30)
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        if is_event and self.refused:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            if json.loads(body)["id"] in self.refused:
                start_response("422 Unprocessable Entity", [("Content-Length", "0")])
                return [b""]
        if self.state == "down" or (self.state == "sick" and is_event):
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscriber(app, outcomes_app, redis_conn):
    """The outcomes service as the dissemination service's subscriber, with the seeded directory's
    events already delivered so that only the test's own events are in flight."""
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        session.execute(update(models.OutboxDelivery).values(status="delivered"))
        session.commit()
    redis_conn.flushdb()
    server = Subscriber(outcomes_app)
    yield server
    server.stop()
    set_runtime("dissemination", None)


def point_jobs_at(app, subscriber: Subscriber, **changes):
    """The dissemination service's jobs, sending to ``subscriber``."""
    settings = app.extensions["settings"]
    settings = replace(settings, service_urls={**settings.service_urls, "outcomes": subscriber.url}, **changes)
    set_runtime("dissemination", Runtime(app.extensions["service"], settings, app.extensions["database"]))
    return settings


def emit_pings(app, settings, count: int) -> list[str]:
    """Events of a type the outcomes service records in its inbox and otherwise ignores; their
    relays are enqueued after the commit, as every event's are."""
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        ids = [str(outbox.emit(session, models, settings, "drill.ping", uuid.uuid4(), {"n": n})) for n in range(count)]
        session.commit()
    return ids


def deliveries(app, event_ids: list[str]) -> list[tuple[str, int]]:
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        rows = session.execute(
            select(models.OutboxDelivery.status, models.OutboxDelivery.attempts).where(
                models.OutboxDelivery.event_id.in_([uuid.UUID(i) for i in event_ids])
            )
        ).all()
    return [tuple(row) for row in rows]


def inbox_counts(outcomes_app, event_ids: list[str]) -> list[int]:
    """How many times the outcomes service recorded each event in its inbox."""
    models = outcomes_app.extensions["service"].models
    with outcomes_app.extensions["database"].job_session() as session:
        return [
            session.scalar(select(func.count()).where(models.InboxEvent.event_id == uuid.UUID(i))) for i in event_ids
        ]


@pytest.fixture
def sweep_later(monkeypatch):
    """The sweep leaves events younger than a few seconds to their own job: let a minute pass."""
    real_utcnow = outbox.utcnow

    def sweep() -> int:
        with monkeypatch.context() as patch:
            patch.setattr(outbox, "utcnow", lambda: real_utcnow() + timedelta(minutes=1))
            return outbox.sweep_outbox("dissemination")

    return sweep


WORKER = (
    "import os, services; from rq import SimpleWorker; from shared.queue import redis_connection; "
    "SimpleWorker(['events'], connection=redis_connection(os.environ['REDIS_URL'])).work(with_scheduler=False)"
)


def wait_until_row_is_free(app, event_id: str) -> None:
    """PostgreSQL ends the killed worker's backend, and its row lock, when it sees the socket
    close: at once in practice, waited for here so that a slow machine cannot fail the test."""
    models = app.extensions["service"].models
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with app.extensions["database"].job_session() as session:
            row = session.scalar(
                select(models.OutboxDelivery.id)
                .where(models.OutboxDelivery.event_id == uuid.UUID(event_id))
                .with_for_update(skip_locked=True)
            )
            if row is not None:
                return
        time.sleep(0.05)
    pytest.fail("the killed worker's row lock was never released")


def test_a_relay_killed_mid_post_is_sent_again_by_one_sweep_and_applied_once(
    app, outcomes_app, subscriber, redis_conn, run_jobs, sweep_later
):
    from shared.queue import ABANDON_GRACE, abandoned

    settings = point_jobs_at(app, subscriber)
    subscriber.hang_next_event = True
    [event_id] = emit_pings(app, settings, 1)
    job_id = outbox.relay_job_id("dissemination", event_id, "outcomes")
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        cwd=ROOT,
        env={**os.environ, "OUTCOMES_URL": subscriber.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert subscriber.hanging.wait(timeout=60), "the worker never started the relay"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    subscriber.release.set()  # the held POST ends unanswered, never applied
    wait_until_row_is_free(app, event_id)

    # What the SIGKILL left: the job started, in the started registry, its worker's key in Redis.
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.STARTED
    assert job_id in StartedJobRegistry("events", connection=redis_conn).get_job_ids(cleanup=False)
    assert redis_conn.exists(f"rq:worker:{job.worker_name}")
    # Seen from another machine only the heartbeat tells, once the job's time limit has passed.
    redis_conn.hset(f"rq:worker:{job.worker_name}", "hostname", "elsewhere")
    assert abandoned(redis_conn, job) is None
    later = job.last_heartbeat + timedelta(seconds=outbox.RELAY_JOB_TIMEOUT + ABANDON_GRACE + 1)
    assert "past its time limit" in abandoned(redis_conn, job, now=later)
    redis_conn.hset(f"rq:worker:{job.worker_name}", "hostname", __import__("socket").gethostname())
    assert "process of its worker" in abandoned(redis_conn, job)

    assert sweep_later() == 1  # one sweep enqueues it again
    assert Job.fetch(job_id, connection=redis_conn).get_status() == JobStatus.QUEUED
    assert StartedJobRegistry("events", connection=redis_conn).get_job_ids(cleanup=False) == []
    run_jobs()
    assert deliveries(app, [event_id]) == [("delivered", 1)]
    assert inbox_counts(outcomes_app, [event_id]) == [1]
    assert subscriber.posts == 2  # the one the kill cut short, and the one applied
    assert sweep_later() == 0
    run_jobs()
    assert subscriber.posts == 2 and inbox_counts(outcomes_app, [event_id]) == [1]


def test_a_subscriber_back_gets_its_waiting_deliveries_with_the_next_success(
    app, outcomes_app, subscriber, redis_conn, run_jobs
):
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    subscriber.state = "down"
    waiting = emit_pings(app, settings, 5)
    run_jobs()  # each first try fails; RQ schedules the retries a minute on
    scheduled = ScheduledJobRegistry("events", connection=redis_conn)
    assert len(scheduled) == 5
    assert deliveries(app, waiting) == [("pending", 1)] * 5

    subscriber.state = "up"
    back = time.monotonic()
    fresh = emit_pings(app, settings, 1)
    run_jobs()  # the new event gets through, and its success sends the waiting ones now
    took = time.monotonic() - back
    assert len(scheduled) == 0
    assert deliveries(app, waiting) == [("delivered", 2)] * 5
    assert inbox_counts(outcomes_app, waiting + fresh) == [1] * 6
    print(f"\ncaught up: 5 waiting deliveries applied {took:.2f} s after the subscriber answered (retry was 60 s)")


def test_deliveries_left_waiting_during_a_release_go_with_the_next_success(
    app, outcomes_app, subscriber, redis_conn, run_jobs
):
    """A relay that fails while a release is under way (it started before the subscriber was
    back) marks the outage again; a success meanwhile must leave that mark for the next one, so
    the delivery goes within seconds, not at its retry a minute on."""
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    subscriber.state = "down"
    late = emit_pings(app, settings, 2)
    run_jobs()  # fail: the outage is marked, the retries are a minute away
    scheduled = ScheduledJobRegistry("events", connection=redis_conn)
    assert len(scheduled) == 2
    release_lock = "outbox:release:dissemination:outcomes"
    redis_conn.set(release_lock, "1")  # another worker's release is under way

    subscriber.state = "up"
    first = emit_pings(app, settings, 1)
    run_jobs()  # this success finds the release under way: it leaves the mark
    assert deliveries(app, first) == [("delivered", 1)]
    assert deliveries(app, late) == [("pending", 1)] * 2 and len(scheduled) == 2
    redis_conn.delete(release_lock)  # that release ends

    second = emit_pings(app, settings, 1)
    run_jobs()  # the next success releases what was left waiting
    assert len(scheduled) == 0
    assert deliveries(app, late) == [("delivered", 2)] * 2
    assert inbox_counts(outcomes_app, late + first + second) == [1] * 4


def test_a_subscriber_back_with_no_new_event_is_noticed_by_the_sweep(
    app, outcomes_app, subscriber, redis_conn, run_jobs, sweep_later
):
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    subscriber.state = "down"
    waiting = emit_pings(app, settings, 4)
    run_jobs()
    assert deliveries(app, waiting) == [("pending", 1)] * 4

    sweep_later()  # its /healthz fails: nothing is sent
    posts = subscriber.posts
    subscriber.state = "sick"  # /healthz answers, events still fail
    sweep_later()
    assert subscriber.posts == posts + 1  # one probe...
    assert deliveries(app, waiting) == [("pending", 1)] * 4  # ...which cost no delivery a retry
    assert len(ScheduledJobRegistry("events", connection=redis_conn)) == 4

    subscriber.state = "up"
    back = time.monotonic()
    sweep_later()  # the probe gets through and sends the rest now
    run_jobs()
    took = time.monotonic() - back
    assert sorted(status for status, _ in deliveries(app, waiting)) == ["delivered"] * 4
    assert inbox_counts(outcomes_app, waiting) == [1] * 4
    assert len(ScheduledJobRegistry("events", connection=redis_conn)) == 0
    print(f"\ncaught up: 4 waiting deliveries applied {took:.2f} s after the sweep found the subscriber back")


def test_an_event_the_subscriber_refuses_keeps_its_retry_ladder_while_others_get_through(
    app, outcomes_app, subscriber, redis_conn, run_jobs
):
    """Only an outage releases waiting deliveries: a delivery refused for its own sake must not
    have its retries rushed by every other event that gets through."""
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    [refused] = emit_pings(app, settings, 1)
    subscriber.refused.add(refused)
    run_jobs()
    scheduled = ScheduledJobRegistry("events", connection=redis_conn)
    assert len(scheduled) == 1 and deliveries(app, [refused]) == [("pending", 1)]
    others = emit_pings(app, settings, 3)
    run_jobs()
    assert deliveries(app, others) == [("delivered", 1)] * 3
    assert len(scheduled) == 1 and deliveries(app, [refused]) == [("pending", 1)]  # still a minute away


def test_one_watch_probes_an_unavailable_subscriber_until_it_is_back(
    app, outcomes_app, subscriber, redis_conn, run_jobs
):
    """With no new event and no sweep due, a watch job probing every few seconds notices the
    subscriber back; however many relays failed, one watch runs at a time."""
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    subscriber.state = "down"
    waiting = emit_pings(app, settings, 3)
    run_jobs()
    watches = ScheduledJobRegistry("dissemination", connection=redis_conn)
    assert len(watches) == 1

    def next_watch_is_due():
        """What RQ's scheduler does WATCH_SECONDS later: move the watch to the queue, and run it."""
        [job_id] = watches.get_job_ids()
        watches.requeue(job_id)
        run_jobs()

    next_watch_is_due()  # still down: it comes again, and sends nothing
    assert len(watches) == 1
    assert deliveries(app, waiting) == [("pending", 1)] * 3

    subscriber.state = "up"
    back = time.monotonic()
    next_watch_is_due()
    took = time.monotonic() - back
    assert deliveries(app, waiting) == [("delivered", 2)] * 3
    assert inbox_counts(outcomes_app, waiting) == [1] * 3
    assert len(watches) == 0 and not redis_conn.exists(catchup._watch_key("dissemination", "outcomes"))
    assert len(ScheduledJobRegistry("events", connection=redis_conn)) == 0
    print(
        f"\ncaught up: 3 waiting deliveries applied {took:.2f} s after the watch probed "
        f"(it probes every {catchup.WATCH_SECONDS} s; the retry was 60 s)"
    )


def test_events_waiting_together_go_in_one_batch_each_applied_once(app, outcomes_app, subscriber, run_jobs):
    """The first relay job to run takes the other deliveries waiting for their first try with it,
    in one POST; their own jobs then find nothing to do."""
    settings = point_jobs_at(app, subscriber)
    waiting = emit_pings(app, settings, 7)
    run_jobs()
    assert subscriber.batches == [7] and subscriber.posts == 0
    assert deliveries(app, waiting) == [("delivered", 1)] * 7
    assert inbox_counts(outcomes_app, waiting) == [1] * 7


def test_a_batch_past_the_body_limit_goes_in_parts_each_applied_once(
    app, outcomes_app, subscriber, monkeypatch, run_jobs
):
    """The subscriber refuses a body over its limit (413): the relay sends as many events as fit,
    and the next batch's relay takes the rest (the last one alone, the only one left), each on
    its first try."""
    from shared import guard

    settings = point_jobs_at(app, subscriber)
    waiting = emit_pings(app, settings, 7)
    one = len(outbox._encoded(outbox.event_message(_first_event(app, waiting[0]), "dissemination")))
    monkeypatch.setattr(guard, "MAX_CONTENT_LENGTH", 3 * one + 40)  # three at most, the fourth not
    run_jobs()
    assert subscriber.batches == [3, 3] and subscriber.posts == 1
    assert deliveries(app, waiting) == [("delivered", 1)] * 7
    assert inbox_counts(outcomes_app, waiting) == [1] * 7


def test_a_batch_that_could_not_apply_its_own_event_hands_the_rest_on(
    app, outcomes_app, subscriber, monkeypatch, redis_conn, run_jobs
):
    """A cut batch whose own event the subscriber could not apply: its job tries that one alone,
    and the events the cut left get the next batch's relay, not the sweep's."""
    from shared import guard

    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        # The outcomes service cannot apply a package.issued without its package: "failed".
        bad = outbox.emit(session, models, settings, "package.issued", uuid.uuid4(), {"nothing": "here"})
        session.commit()
    good = emit_pings(app, settings, 6)
    one = len(outbox._encoded(outbox.event_message(_first_event(app, good[0]), "dissemination")))
    monkeypatch.setattr(guard, "MAX_CONTENT_LENGTH", 3 * one + 100)  # the bad one and two others
    run_jobs()
    assert subscriber.batches == [3, 3] and subscriber.posts == 2  # the bad one alone, the last alone
    assert deliveries(app, good) == [("delivered", 1)] * 6
    assert deliveries(app, [str(bad)]) == [("pending", 1)]  # tried alone once, its retry waiting
    assert len(ScheduledJobRegistry("events", connection=redis_conn)) == 1


def test_an_event_too_large_for_company_goes_alone_and_the_rest_in_a_batch(
    app, outcomes_app, subscriber, monkeypatch, run_jobs
):
    from shared import guard

    settings = point_jobs_at(app, subscriber)
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        large = outbox.emit(session, models, settings, "drill.ping", uuid.uuid4(), {"n": -1, "pad": "x" * 3000})
        session.commit()
    small = emit_pings(app, settings, 4)
    alone = len(outbox._encoded(outbox.event_message(_first_event(app, str(large)), "dissemination")))
    monkeypatch.setattr(guard, "MAX_CONTENT_LENGTH", alone + 20)  # the large one alone, or the four small
    run_jobs()
    assert subscriber.posts == 1 and subscriber.batches == [4]
    assert deliveries(app, [str(large), *small]) == [("delivered", 1)] * 5
    assert inbox_counts(outcomes_app, [str(large), *small]) == [1] * 5


def _first_event(app, event_id: str):
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        return session.scalars(select(models.OutboxEvent).where(models.OutboxEvent.id == uuid.UUID(event_id))).one()


def test_an_event_the_subscriber_cannot_apply_in_a_batch_is_tried_alone_and_the_rest_go(
    app, outcomes_app, subscriber, redis_conn, run_jobs
):
    settings = point_jobs_at(app, subscriber, relay_retry_intervals=(60, 300, 900))
    models = app.extensions["service"].models
    good = emit_pings(app, settings, 1)
    with app.extensions["database"].job_session() as session:
        # The outcomes service cannot apply a package.issued without its package: its handler fails.
        bad = outbox.emit(session, models, settings, "package.issued", uuid.uuid4(), {"nothing": "here"})
        session.commit()
    good += emit_pings(app, settings, 2)
    run_jobs()
    assert subscriber.batches == [4]
    assert deliveries(app, good) == [("delivered", 1)] * 3 and inbox_counts(outcomes_app, good) == [1] * 3
    # Answered "failed" in the batch, then tried alone: refused again, so it keeps its retry ladder.
    assert subscriber.posts == 1
    assert deliveries(app, [str(bad)]) == [("pending", 2)]
    assert inbox_counts(outcomes_app, [str(bad)]) == [0]
    assert len(ScheduledJobRegistry("events", connection=redis_conn)) == 1


def test_a_relay_whose_own_event_another_batch_took_after_its_own_batch_sends_it_no_more(
    app, outcomes_app, subscriber, monkeypatch, run_jobs
):
    """A relay whose own event its batch could not apply tries it alone, reading it again: its
    lock went with the batch's commit, and another relay's batch may have delivered it since.
    The read must see that (the session still holds the object as it was: "pending")."""
    settings = point_jobs_at(app, subscriber)
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        # The outcomes service cannot apply a package.issued without its package: "failed".
        bad = outbox.emit(session, models, settings, "package.issued", uuid.uuid4(), {"nothing": "here"})
        session.commit()
    good = emit_pings(app, settings, 2)
    real_relay_batch = outbox.relay_batch

    def batch_then_another_relay_takes_it(*args, **kwargs):
        sent = real_relay_batch(*args, **kwargs)  # committed: its locks are gone
        with app.extensions["database"].job_session() as other:  # another worker's batch, since
            other.execute(
                update(models.OutboxDelivery)
                .where(models.OutboxDelivery.event_id == bad)
                .values(status="delivered", attempts=1)
            )
            other.commit()
        return sent

    monkeypatch.setattr(outbox, "relay_batch", batch_then_another_relay_takes_it)
    run_jobs()
    assert subscriber.batches == [3]
    assert subscriber.posts == 0  # not sent again alone
    assert deliveries(app, [str(bad)]) == [("delivered", 1)]
    assert deliveries(app, good) == [("delivered", 1)] * 2


def test_a_relay_whose_event_went_in_another_batch_still_lets_the_next_event_have_a_job(
    app, outcomes_app, subscriber, run_jobs
):
    """A new event's relay is not enqueued while one to the same subscriber is queued (it will
    take the new one in its batch). When that queued job finds its own event already sent in
    another job's batch, it must still say it has started, or the next events wait for the sweep."""
    settings = point_jobs_at(app, subscriber)
    [first] = emit_pings(app, settings, 1)
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:  # another worker's batch took it
        session.execute(
            update(models.OutboxDelivery)
            .where(models.OutboxDelivery.event_id == uuid.UUID(first))
            .values(status="delivered", attempts=1)
        )
        session.commit()
    run_jobs()  # its own job finds nothing to do
    later = emit_pings(app, settings, 2)
    run_jobs()
    assert deliveries(app, later) == [("delivered", 1)] * 2
    assert inbox_counts(outcomes_app, later) == [1, 1]


def test_one_relay_per_transaction_carries_all_its_events(app, outcomes_app, subscriber, redis_conn, run_jobs):
    from rq import Queue

    settings = point_jobs_at(app, subscriber)
    events = emit_pings(app, settings, 5)  # five events, one transaction
    assert Queue("events", connection=redis_conn).count == 1
    run_jobs()
    assert subscriber.batches == [5]
    assert deliveries(app, events) == [("delivered", 1)] * 5


def test_an_event_taken_back_by_a_savepoint_does_not_strand_the_rest(app, outcomes_app, subscriber, run_jobs):
    settings = point_jobs_at(app, subscriber)
    models = app.extensions["service"].models
    with app.extensions["database"].job_session() as session:
        try:
            with session.begin_nested():
                outbox.emit(session, models, settings, "drill.ping", uuid.uuid4(), {"n": 0})
                raise RuntimeError("taken back")
        except RuntimeError:
            pass
        kept = outbox.emit(session, models, settings, "drill.ping", uuid.uuid4(), {"n": 1})
        session.commit()
    run_jobs()  # the relay enqueued for the event taken back finds nothing, and hands on
    assert deliveries(app, [str(kept)]) == [("delivered", 1)]
    assert inbox_counts(outcomes_app, [str(kept)]) == [1]


def test_a_batch_reads_its_events_at_once_whatever_its_size(app, outcomes_app, subscriber, run_jobs):
    """A relay reads its batch's deliveries and their events in a fixed number of queries: 3 or
    30 events in a batch cost the relay the same statements (not one more per event)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    settings = point_jobs_at(app, subscriber)
    statements: list[str] = []

    def keep(_conn, _cursor, statement, *_args):
        if "outbox_" in statement:  # the relay's; the subscriber writes only its inbox
            statements.append(statement.split()[0])

    costs = {}
    for size in (3, 30):
        waiting = emit_pings(app, settings, size)
        statements.clear()
        event.listen(Engine, "before_cursor_execute", keep)
        try:
            run_jobs()
        finally:
            event.remove(Engine, "before_cursor_execute", keep)
        assert deliveries(app, waiting) == [("delivered", 1)] * size
        costs[size] = len(statements)
    assert subscriber.batches[-2:] == [3, 30]
    assert costs[30] == costs[3], costs
    # The job's own delivery with its event, the others with theirs, the batch marked delivered.
    assert costs[3] == 3, statements
