"""Catching up when a subscriber answers again, instead of at each delivery's next retry.

While a subscriber is down its deliveries climb the retry ladder (RQ's scheduled jobs, minutes
apart by the end). A relay that finds it unavailable (no answer, 429,
502, 503, 504) marks an outage in Redis; the first relay to it that succeeds afterwards sends
every pending delivery of it at once (``release_waiting``: its scheduled retries moved to the
queue, any without a job enqueued; one release per subscriber at a time). A
delivery refused for its own sake (a 4xx, a 500) marks no outage, so other events getting
through never rush its retries. So that catch-up happens with no new event too, a subscriber
found unavailable is **watched** (one ``watch_probe`` job at a time, every ``WATCH_SECONDS``,
for an hour at most) and each sweep probes every subscriber with retried deliveries waiting: a
probe asks its ``/healthz`` and, if it answers, sends one waiting delivery as a try that costs no
retry and records nothing if it fails; its success releases the rest. A subscriber that answers
``/healthz`` but cannot take events (its database down) thus costs one POST per probe, never a
retry of every waiting delivery each time.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import requests
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from shared import outbox
from shared.queue import job_statuses, queue, redis_connection
from shared.settings import Settings

log = logging.getLogger(__name__)

PROBE_TIMEOUT = (1, 2)
RELEASE_LOCK_SECONDS = 60  # only a safety net: a release frees its lock when it ends
RELEASE_BATCH = 1000
OUTAGE_MEMORY = 24 * 3600  # longer than the retry ladder
# While a subscriber is unavailable one probe job at a time watches it, every WATCH_SECONDS, for
# at most WATCH_LINKS probes (an hour); the sweep probes it too, every sweep, however long.
WATCH_SECONDS = 5
WATCH_LINKS = 720
WATCH_CLAIM_SECONDS = 120  # a watch whose next probe has not run by then is given up for a new one
STILL_AWAY = {"down", "still failing"}


def note_outage(settings: Settings, subscriber: str) -> None:
    """A relay found ``subscriber`` unavailable: its next success releases the waiting, and a
    watch looks for its return meanwhile."""
    redis_connection(settings.redis_url).set(_outage_key(settings.service, subscriber), "1", ex=OUTAGE_MEMORY)
    watch_subscriber(settings, subscriber)


def _outage_key(service_name: str, subscriber: str) -> str:
    return f"outbox:unavailable:{service_name}:{subscriber}"


def release_waiting(service_name: str, subscriber: str, after_probe: bool = False) -> int:
    """After a relay to ``subscriber`` succeeded: if relays found it unavailable since its last
    success (or a probe just found it back), send every pending delivery of it now instead of at
    its next retry. Returns how many were sent on.

    A delivery the subscriber refuses for its own sake (a 4xx, a 500) marks no outage, so it keeps
    its retry ladder however many other events get through meanwhile."""
    from shared.service import runtime

    rt = runtime(service_name)
    connection = redis_connection(rt.settings.redis_url)
    outage = _outage_key(service_name, subscriber)
    if not after_probe and not connection.exists(outage):
        return 0  # the usual case: no outage since the last success
    # One release per subscriber at a time, held only while it runs. A success that finds one
    # under way leaves the mark alone; so does a relay that fails meanwhile (it sets the mark
    # again): the next success after this release then releases what they left waiting, instead
    # of their waiting for their next retry, a minute away.
    lock = f"outbox:release:{service_name}:{subscriber}"
    if not connection.set(lock, "1", nx=True, ex=RELEASE_LOCK_SECONDS):
        return 0
    try:
        if not connection.delete(outage) and not after_probe:
            return 0  # another release took the mark first
        return _release(rt, connection, service_name, subscriber)
    finally:
        connection.delete(lock)


def _release(rt, connection, service_name: str, subscriber: str) -> int:
    deliveries = rt.service.models.OutboxDelivery
    with rt.database.job_session() as session:
        event_ids = session.scalars(
            select(deliveries.event_id)
            .where(deliveries.status == "pending", deliveries.subscriber == subscriber)
            .order_by(deliveries.id)
            .limit(RELEASE_BATCH)
        ).all()
    scheduled = ScheduledJobRegistry(outbox.EVENTS_QUEUE, connection=connection)
    job_ids = [outbox.relay_job_id(service_name, event_id, subscriber) for event_id in event_ids]
    released = 0
    for event_id, job_id, status in zip(event_ids, job_ids, job_statuses(connection, job_ids), strict=True):
        if status == JobStatus.SCHEDULED:
            try:
                scheduled.requeue(job_id)  # keeps the job's retries left
                released += 1
                continue
            except (InvalidJobOperation, NoSuchJobError):
                pass  # RQ's scheduler moved it first
        elif status in outbox.WAITING_ITS_TURN:
            continue
        if outbox.enqueue_relay_job(rt.settings, event_id, subscriber) is not None:
            released += 1
    log.info("%s answers again: %s of its waiting deliveries sent now", subscriber, released)
    return released


def subscriber_answers(settings: Settings, subscriber: str) -> bool:
    try:
        response = requests.get(settings.service_urls[subscriber] + "/healthz", timeout=PROBE_TIMEOUT)
    except requests.RequestException:
        return False
    return response.status_code == 200


def probe_subscriber(service_name: str, subscriber: str) -> str:
    """If ``subscriber`` has retried deliveries waiting and answers ``/healthz``, send one of them
    now as a probe (it costs no retry); its success sends the rest (``release_waiting``)."""
    from shared.service import runtime

    rt = runtime(service_name)
    deliveries = rt.service.models.OutboxDelivery
    with rt.database.job_session() as session:
        # The least-tried one: a delivery the subscriber refuses for its own sake keeps failing and
        # climbs the ladder; it must not be the one every probe tries.
        candidate = session.scalar(
            select(deliveries.event_id)
            .where(deliveries.status == "pending", deliveries.subscriber == subscriber, deliveries.attempts > 0)
            .order_by(deliveries.attempts, deliveries.id)
            .limit(1)
        )
    if candidate is None:
        return "nothing waiting"
    if not subscriber_answers(rt.settings, subscriber):
        return "down"
    result = outbox.relay_event(service_name, str(candidate), subscriber, probing=True)
    if result == "delivered":
        # Its own retry, still scheduled, would only find nothing to do.
        job_id = outbox.relay_job_id(service_name, candidate, subscriber)
        try:
            ScheduledJobRegistry(outbox.EVENTS_QUEUE, connection=redis_connection(rt.settings.redis_url)).remove(
                job_id, delete_job=True
            )
        except NoSuchJobError:
            pass
    return result


def _watch_key(service_name: str, subscriber: str) -> str:
    return f"outbox:watch:{service_name}:{subscriber}"


def watch_subscriber(settings: Settings, subscriber: str) -> bool:
    """Probe ``subscriber`` every ``WATCH_SECONDS`` until it is back, unless a watch is already on
    it: catch-up then starts within seconds of its return, not at the next sweep or retry.
    Returns whether this call started one."""
    connection = redis_connection(settings.redis_url)
    token = uuid.uuid4().hex
    if not connection.set(_watch_key(settings.service, subscriber), token, nx=True, ex=WATCH_CLAIM_SECONDS):
        return False
    _next_watch(settings, subscriber, token, link=1)
    return True


def _next_watch(settings: Settings, subscriber: str, token: str, link: int) -> None:
    queue(settings.redis_url, settings.service).enqueue_in(
        timedelta(seconds=WATCH_SECONDS),
        watch_probe,
        settings.service,
        subscriber,
        token,
        link,
        job_timeout=60,
        result_ttl=60,
        failure_ttl=3600,
    )


def watch_probe(service_name: str, subscriber: str, token: str, link: int) -> str:
    """RQ job, one link of a watch: probe, and if the subscriber is still away, come again."""
    from shared.service import runtime

    rt = runtime(service_name)
    connection = redis_connection(rt.settings.redis_url)
    key = _watch_key(service_name, subscriber)
    if connection.get(key) != token.encode():
        return "another watch took over"
    result = probe_subscriber(service_name, subscriber)
    if result in STILL_AWAY and link < WATCH_LINKS:
        connection.set(key, token, ex=WATCH_CLAIM_SECONDS)
        _next_watch(rt.settings, subscriber, token, link + 1)
        return result
    connection.delete(key)
    return result


def probe_and_watch(service_name: str, subscriber: str) -> str:
    """The sweep's look at a subscriber with retried deliveries waiting: probe it now, and have it
    watched if it is still away (a watch lost with Redis, or never started)."""
    from shared.service import runtime

    result = probe_subscriber(service_name, subscriber)
    if result in STILL_AWAY:
        watch_subscriber(runtime(service_name).settings, subscriber)
    return result
