"""The event outbox: what a service sends.

``emit`` writes the event and one delivery row per subscriber in the caller's transaction;
after commit a relay job per delivery is enqueued. The relay POSTs the signed event to the
subscriber's ``/internal/events`` (``shared.inbox``), retried with backoff; after the last try
the delivery is ``dead`` and listed at ``/api/v1/outbox`` until an admin redelivers it. A
periodic sweep re-enqueues pending deliveries whose job was lost (Redis down or flushed) or
abandoned by a worker that died mid-relay (``shared.queue``), so a lost Redis or a killed worker
delays delivery and never loses it.

**Catching up** when a subscriber answers again after an outage: ``shared.catchup``.

**Exactly once.** The relay locks its delivery row (``SKIP LOCKED``: a second copy of the same
job, or a probe, already holds it and will finish it) and does nothing to a row that is no
longer pending; the subscriber's inbox ignores an event id it has applied. A released, repeated
or probing relay therefore never applies an event twice.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import requests
from flask import current_app
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from marshmallow import fields, validate
from redis.exceptions import RedisError
from rq.job import JobStatus
from sqlalchemy import event as orm_events
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from shared import catchup, guard, signing
from shared.api import BaseSchema
from shared.auth import require
from shared.db import after_commit, commit, get_session, insert_rows, new_id, table_of, utcnow
from shared.health import record_sweep
from shared.inbox import MAX_BATCH
from shared.logs import REQUEST_ID_HEADER, bind_request_id, current_request_id, get_logger
from shared.models import DELIVERY_STATUSES, OutboxDeliveryMixin, SharedModels, event_message
from shared.monitoring import EVENTS_RELAYED
from shared.queue import enqueue, is_final_try, job_statuses, redis_connection, retry
from shared.settings import Settings

log = get_logger(__name__)

# Relays have a queue of their own, listened to after the services' queues, so that a burst of
# events (seeding the directory, a rebuild) never holds up notifications and chases.
EVENTS_QUEUE = "events"
# A relay's POST gives up after 3 s connecting and 10 s waiting for the answer; its time limit
# leaves room for the row's transaction, and is how long a started relay may stay silent before
# it is judged abandoned (``shared.queue.abandoned``) when its worker ran on another host.
RELAY_JOB_TIMEOUT = 30
# How long "a relay to this subscriber is queued" is remembered (see enqueue_relay_job).
RELAY_QUEUED_SECONDS = 10
POST_TIMEOUT = (3, 10)
SWEEP_BATCH = 1000
PROBES_PER_SWEEP = 10  # subscribers probed by one sweep (there are two or three)
WAITING_ITS_TURN = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def relay_job_id(service: str, event_id: uuid.UUID | str, subscriber: str) -> str:
    return f"relay-{service}-{event_id}-{subscriber}"


def emit(
    session: Session,
    models: SharedModels,
    settings: Settings,
    event_type: str,
    aggregate_id: str | uuid.UUID,
    payload: dict,
) -> uuid.UUID:
    """Write an event and its deliveries in the caller's transaction; the event's id."""
    [event_id] = _insert_events(session, models, settings, event_type, [(aggregate_id, payload)])
    log.debug("event emitted", type=event_type, event_id=str(event_id))
    return event_id


def emit_many(
    session: Session,
    models: SharedModels,
    settings: Settings,
    event_type: str,
    events: list[tuple[str | uuid.UUID, dict]],
) -> list[uuid.UUID]:
    """``emit`` for many events of one type, ``(aggregate id, payload)`` each: two Core inserts
    (the events, their deliveries) however many there are. The unit of work would track an
    object per row (the chase sweep's hundreds of ``return.overdue``), and even for one event
    its flush cost a filing more than the two statements do. Their ids."""
    if not events:
        return []
    ids = _insert_events(session, models, settings, event_type, events)
    log.debug("events emitted", type=event_type, count=len(ids))
    return ids


def _insert_events(
    session: Session,
    models: SharedModels,
    settings: Settings,
    event_type: str,
    events: list[tuple[str | uuid.UUID, dict]],
) -> list[uuid.UUID]:
    session.flush()  # events the transaction emitted before keep their place in the outbox's order
    occurred_at, request_id = utcnow(), current_request_id()
    ids = [new_id() for _ in events]
    rows = [
        {
            "id": event_id,
            "type": event_type,
            "aggregate_id": str(aggregate_id),
            "payload": _plain(payload),
            "occurred_at": occurred_at,
            "request_id": request_id,
        }
        for event_id, (aggregate_id, payload) in zip(ids, events, strict=True)
    ]
    # On PostgreSQL, one statement per table whatever the number of rows (``insert_rows``): an
    # executemany of one or two rows went through psycopg's pipeline each time, 15% of a filing's
    # CPU (py-spy). In order: the outbox's position and the deliveries' ids are the order the
    # relay sends them in.
    insert_rows(session, models.OutboxEvent, rows, in_order=True)
    deliveries = [
        {"event_id": event_id, "subscriber": subscriber, "status": "pending", "attempts": 0}
        for event_id in ids
        for subscriber in settings.subscribers
    ]
    insert_rows(session, models.OutboxDelivery, deliveries, in_order=True)
    _relay_after_commit(session, settings, ids[0])
    return ids


def _plain(payload: dict) -> dict:
    """The payload as JSON will carry it (dates and ids as text)."""
    return json.loads(json.dumps(payload, default=str, allow_nan=False))


def _relay_after_commit(session: Session, settings: Settings, event_id: uuid.UUID) -> None:
    # One relay per subscriber for the whole transaction: it takes the transaction's other events
    # in its batch (all committed together), and a full batch (or one cut at the subscriber's
    # limit on a body) hands on to the next.
    relayed = session.info.setdefault(RELAYED_IN_TRANSACTION, set())
    for subscriber in settings.subscribers:
        if subscriber not in relayed:
            relayed.add(subscriber)
            after_commit(session, _enqueue_relay_later(settings, event_id, subscriber, new_event=True))


RELAYED_IN_TRANSACTION = "outbox_relayed_subscribers"


@orm_events.listens_for(Session, "after_commit")
@orm_events.listens_for(Session, "after_rollback")
def _transaction_ended(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(RELAYED_IN_TRANSACTION, None)


def _enqueue_relay_later(settings: Settings, event_id: uuid.UUID, subscriber: str, new_event: bool = False):
    def enqueue_relay() -> None:
        enqueue_relay_job(settings, event_id, subscriber, new_event=new_event)

    return enqueue_relay


def _relay_queued_key(service: str, subscriber: str) -> str:
    return f"outbox:relay-queued:{service}:{subscriber}"


def enqueue_relay_job(settings: Settings, event_id: uuid.UUID | str, subscriber: str, new_event: bool = False):
    """Enqueue the delivery's relay unless its job is already waiting or running; the job or None.

    A ``new_event`` just committed gets no job of its own while a relay to the same subscriber is
    queued and not yet started: that one takes it in its batch (it clears the mark as it starts,
    before it looks for companions, so nothing committed before the mark was seen is missed). The
    mark expires, and the sweep finds any delivery left without a job, if a queued job is lost.
    """
    if new_event:
        mark = redis_connection(settings.redis_url).set(
            _relay_queued_key(settings.service, subscriber), str(event_id), nx=True, ex=RELAY_QUEUED_SECONDS
        )
        if not mark:
            return None
    return enqueue(
        settings.redis_url,
        EVENTS_QUEUE,
        relay_event,
        settings.service,
        str(event_id),
        subscriber,
        job_id=relay_job_id(settings.service, event_id, subscriber),
        skip_if_active=not new_event,  # a new event has no job yet: Redis is not asked first
        retry=retry(settings.relay_retry_intervals),
        job_timeout=RELAY_JOB_TIMEOUT,
    )


class DeliveryFailed(Exception):
    pass


def relay_event(service_name: str, event_id: str, subscriber: str, probing: bool = False) -> str:
    """RQ job: deliver one event to one subscriber. Raises to make RQ retry it.

    ``probing``: a try to see whether the subscriber is back (``probe_subscriber``); when it
    fails nothing is recorded and nothing raised, so it costs the delivery no retry.
    """
    from shared.service import runtime

    rt = runtime(service_name)
    models = rt.service.models
    if not probing:
        # This job is under way: an event committed from now on needs a job of its own. Cleared
        # first, whatever this job then finds (its own event may have gone in another's batch).
        _clear_relay_queued(rt.settings, subscriber)
    with rt.database.job_session() as session:
        delivery = _locked_delivery(session, models, event_id, subscriber)
        if delivery is None:
            if not probing:
                # Its event went in another batch (or a savepoint took it back): the events of
                # its transaction that counted on this job still get a relay.
                _relay_the_next_batch(rt, service_name, subscriber)
            return "nothing to do"
        # A relay enqueued by the sweep has no request id of its own: the event's is the one.
        bind_request_id(delivery.event.request_id)
        # Only a first try goes in a batch: a retry keeps its own job's backoff, alone.
        first_try = not probing and delivery.attempts == 0
        companions = fresh_deliveries(session, models, subscriber, delivery.id) if first_try else []
        if companions:
            sent = relay_batch(rt, session, service_name, subscriber, delivery, companions)
            if sent is not None:
                return sent
            # The batch did not go, or not this one: it is tried alone, as if there were no batch.
            delivery = _locked_delivery(session, models, event_id, subscriber)
            if delivery is None:
                return "nothing to do"
        message = delivery.event.as_message(service_name)
        failure = post_event(rt.settings, subscriber, message)
        if failure is not None and probing:
            session.rollback()
            return "still failing"
        delivery.attempts += 1
        delivery.last_attempt_at = utcnow()
        if failure is None:
            delivery.status = "delivered"
            delivery.delivered_at = utcnow()
            delivery.last_error = None
            session.commit()
            catchup.release_waiting(service_name, subscriber, after_probe=probing)
            EVENTS_RELAYED.labels(service=service_name, subscriber=subscriber, result="delivered").inc()
            # The subscriber logs the event at INFO when it applies it: here only at DEBUG.
            log.debug("event relayed", event_id=event_id, subscriber=subscriber, attempts=delivery.attempts)
            return "delivered"
        delivery.last_error = failure.reason
        final_try = is_final_try()
        if final_try:
            delivery.status = "dead"
        session.commit()
        EVENTS_RELAYED.labels(service=service_name, subscriber=subscriber, result=delivery.status).inc()
        if failure.unavailable:
            catchup.note_outage(rt.settings, subscriber)
        log.warning(
            "event relay failed",
            event_id=event_id,
            subscriber=subscriber,
            attempts=delivery.attempts,
            dead=final_try,
            error=failure.reason,
        )
        raise DeliveryFailed(failure.reason)


def _locked_delivery(session: Session, models: SharedModels, event_id: str, subscriber: str):
    """The delivery, locked, if it is still pending and no other relay holds it; its event read
    with it, in the same statement (only the delivery's row is locked)."""
    delivery = session.scalars(
        select(models.OutboxDelivery)
        .where(
            models.OutboxDelivery.event_id == uuid.UUID(event_id),
            models.OutboxDelivery.subscriber == subscriber,
        )
        # Only the delivery's row is locked: the event comes by an outer join, whose nullable
        # side PostgreSQL refuses to lock.
        .with_for_update(of=models.OutboxDelivery, skip_locked=True)
        .options(joinedload(models.OutboxDelivery.event).lazyload(models.OutboxEvent.deliveries))
        # Read afresh when the session still holds it: after a batch that did not take it, its
        # lock went with the batch's commit, and another relay's batch may have taken it since
        # (the object's "pending" of before would send it twice).
        .execution_options(populate_existing=True)
    ).first()
    return delivery if delivery is not None and delivery.status == "pending" else None


def _clear_relay_queued(settings: Settings, subscriber: str) -> None:
    try:
        redis_connection(settings.redis_url).delete(_relay_queued_key(settings.service, subscriber))
    except RedisError:
        pass  # the mark expires by itself; until then new events wait for the sweep


def _relay_the_next_batch(rt, service_name: str, subscriber: str, besides: int | None = None) -> None:
    """A full batch went (or one cut at the body limit): more may be waiting without a job of
    their own. The oldest one's relay is enqueued, and takes the next batch. ``besides``: the
    running job's own delivery, which it goes on to try alone (its relay job is this one, so an
    enqueue for it would be skipped and the rest would wait for the sweep)."""
    models = rt.service.models
    with rt.database.job_session() as session:
        oldest = session.scalar(
            select(models.OutboxDelivery.event_id)
            .where(
                models.OutboxDelivery.subscriber == subscriber,
                models.OutboxDelivery.status == "pending",
                models.OutboxDelivery.attempts == 0,
                *([models.OutboxDelivery.id != besides] if besides is not None else []),
            )
            .order_by(models.OutboxDelivery.id)
            .limit(1)
        )
    if oldest is not None:
        enqueue_relay_job(rt.settings, oldest, subscriber)


class Companion(NamedTuple):
    """A delivery going in another's batch, with its event's columns (what ``event_message``
    reads): a plain row, not an ORM object."""

    delivery_id: int
    id: uuid.UUID
    type: str
    position: int
    aggregate_id: str
    occurred_at: datetime
    payload: dict
    request_id: str | None


def fresh_deliveries(session: Session, models: SharedModels, subscriber: str, besides: int) -> list[Companion]:
    """Other deliveries to ``subscriber`` waiting for their first try, oldest first, locked (the
    ones another relay holds are skipped), each with its event: they go with this one in a
    batch. One statement of plain rows: read as ORM objects, a batch's deliveries and their
    events (two statements, and an object with its state for each row) were a third of the
    worker's time relaying under load (py-spy)."""
    deliveries, events = table_of(models.OutboxDelivery), table_of(models.OutboxEvent)
    rows = session.execute(
        select(
            deliveries.c.id.label("delivery_id"),
            *(events.c[name] for name in Companion._fields[1:]),
        )
        .select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))
        .where(
            deliveries.c.subscriber == subscriber,
            deliveries.c.status == "pending",
            deliveries.c.attempts == 0,
            deliveries.c.id != besides,
        )
        .order_by(deliveries.c.id)
        .limit(MAX_BATCH - 1)
        .with_for_update(of=deliveries, skip_locked=True)
    )
    return [Companion(*row) for row in rows]


def relay_batch(
    rt, session: Session, service_name: str, subscriber: str, own: OutboxDeliveryMixin, companions: list[Companion]
) -> str | None:
    """Deliver the job's own delivery and its companions in one POST to
    ``/internal/events/batch``, in the order they were emitted: its own and as many of the
    companions, oldest first, as the subscriber's limit on a body allows
    (``guard.MAX_CONTENT_LENGTH``). Each one the subscriber took (applied, duplicate, ignored)
    is marked delivered; one it could not apply goes back to its own relay job, to be tried
    alone. When more are waiting (a full batch, or one cut at the limit), the next batch's relay
    is enqueued. Returns what happened, or None when the batch did not go at all (its own too
    large for any company, among others) or the subscriber could not apply the job's own event
    in it: the caller then tries its own alone."""
    own_message = _encoded(own.event.as_message(service_name))
    messages = [_encoded(event_message(row, service_name)) for row in companions]
    fitting = _within_the_limit(own_message, messages)
    if not fitting:
        # Its own fills a body alone: it goes alone, and the others in the next batch.
        session.rollback()
        _relay_the_next_batch(rt, service_name, subscriber, besides=own.id)
        return None
    # (delivery id, event id, message as JSON), in the order the events were emitted.
    batch = sorted(
        [
            (own.id, own.event_id, own_message),
            *((row.delivery_id, row.id, message) for row, message in zip(companions[:fitting], messages, strict=False)),
        ],
        key=lambda delivery: delivery[0],
    )
    more_waiting = len(companions) == MAX_BATCH - 1 or fitting < len(companions)
    answer = post_events(rt.settings, subscriber, [message for _, _, message in batch])
    if answer is None:
        # Not taken as a batch (down, or an older subscriber): each goes back to its own job.
        event_ids = [own.event_id, *(row.id for row in companions)]
        session.rollback()
        for event_id in event_ids:
            enqueue_relay_job(rt.settings, event_id, subscriber)  # the running one's is skipped
        return None
    now = utcnow()
    taken: list[int] = []
    failed: list[int] = []
    own_taken = True
    for (delivery_id, event_id, _), result in zip(batch, answer, strict=True):
        if result == "failed":
            # Tried alone next, by its own job (this one, for its own): a companion's try is
            # counted, so that no other batch takes it again meanwhile.
            if delivery_id == own.id:
                own_taken = False
            else:
                failed.append(delivery_id)
                after_commit(session, _enqueue_relay_later(rt.settings, event_id, subscriber))
            continue
        taken.append(delivery_id)
    models = rt.service.models
    _mark_tried(session, models, taken, now, status="delivered", delivered_at=now, last_error=None)
    _mark_tried(session, models, failed, now, last_error="not applied in a batch: to be tried alone")
    session.commit()
    catchup.release_waiting(service_name, subscriber)
    EVENTS_RELAYED.labels(service=service_name, subscriber=subscriber, result="delivered").inc(len(taken))
    log.debug("events relayed in a batch", subscriber=subscriber, events=len(batch), taken=len(taken))
    if more_waiting:
        _relay_the_next_batch(rt, service_name, subscriber, besides=None if own_taken else own.id)
    return f"delivered {len(taken)} of {len(batch)} in a batch" if own_taken else None


def _encoded(message: dict) -> bytes:
    return json.dumps(message).encode()


BATCH_OPENING, BATCH_SEPARATOR, BATCH_CLOSING = b'{"events": [', b", ", b"]}"


def _within_the_limit(own: bytes, companions: list[bytes]) -> int:
    """How many of ``companions``, from the first, go with ``own`` in a batch whose body stays
    within the subscriber's limit (0: none, and a batch of one is no batch)."""
    size = len(BATCH_OPENING) + len(own) + len(BATCH_CLOSING)
    for count, message in enumerate(companions):
        size += len(BATCH_SEPARATOR) + len(message)
        if size > guard.MAX_CONTENT_LENGTH:
            return count
    return len(companions)


def _mark_tried(session: Session, models: SharedModels, ids: list[int], now: datetime, **outcome) -> None:
    """A batch's deliveries, their try counted and its ``outcome`` set, in one ``UPDATE``: the
    ones the subscriber took (delivered), and the ones it could not apply (counted, so that no
    other batch takes them before their own jobs try them alone). The unit of work's flush of
    each one (an executemany of up to a hundred rows, their objects' state tracked) was a fifth
    of the worker's time relaying under load (py-spy). The job's own delivery's object keeps
    the values it was read with: nothing reads it after (tried alone when the batch did not take
    it, it is not among the delivered)."""
    if not ids:
        return
    table = table_of(models.OutboxDelivery)
    session.execute(
        update(table).where(table.c.id.in_(ids)).values(attempts=table.c.attempts + 1, last_attempt_at=now, **outcome)
    )


@dataclass(frozen=True)
class PostFailure:
    reason: str
    # The subscriber is not there (no answer, or 429, 502, 503, 504), as against refusing this
    # event: only an outage earns its waiting deliveries a release when it answers again.
    unavailable: bool


UNAVAILABLE_STATUSES = {429, 502, 503, 504}


def post_event(settings: Settings, subscriber: str, message: dict) -> PostFailure | None:
    """POST a signed event; None on success, else why it failed."""
    url = settings.service_urls[subscriber] + "/internal/events"
    body = json.dumps(message).encode()
    headers = signing.signed_headers(settings.event_secret, body)
    if message.get("request_id"):
        headers[REQUEST_ID_HEADER] = message["request_id"]
    try:
        response = requests.post(url, data=body, headers=headers, timeout=POST_TIMEOUT)
    except requests.RequestException as error:
        return PostFailure(f"{type(error).__name__}: {error}", unavailable=True)
    if 200 <= response.status_code < 300:
        return None
    return PostFailure(
        f"HTTP {response.status_code}: {response.text[:300]}",
        unavailable=response.status_code in UNAVAILABLE_STATUSES,
    )


def post_events(settings: Settings, subscriber: str, messages: list[bytes]) -> list[str] | None:
    """POST signed events (each already JSON) as one batch; each one's result, or None if the
    batch did not go."""
    url = settings.service_urls[subscriber] + "/internal/events/batch"
    body = BATCH_OPENING + BATCH_SEPARATOR.join(messages) + BATCH_CLOSING
    headers = signing.signed_headers(settings.event_secret, body)
    request_id = current_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    try:
        response = requests.post(url, data=body, headers=headers, timeout=POST_TIMEOUT)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    try:
        results = [row["result"] for row in response.json()["results"]]
    except (ValueError, KeyError, TypeError):
        return None
    return results if len(results) == len(messages) else None


def sweep_outbox(service_name: str) -> int:
    """RQ cron job: re-enqueue pending deliveries whose relay job is lost or abandoned, probe the
    subscribers that have deliveries waiting on retries, and record the sweep (``/readyz``).
    Returns how many relays it enqueued."""
    from shared.service import runtime

    rt = runtime(service_name)
    models = rt.service.models
    connection = redis_connection(rt.settings.redis_url)
    # Leave fresh events to the job enqueued after their commit.
    settle = utcnow() - timedelta(seconds=5)
    with rt.database.job_session() as session:
        rows = session.execute(
            select(models.OutboxDelivery.event_id, models.OutboxDelivery.subscriber)
            .join(models.OutboxEvent)
            .where(models.OutboxDelivery.status == "pending", models.OutboxEvent.occurred_at < settle)
            .order_by(models.OutboxDelivery.id)
            .limit(SWEEP_BATCH)
        ).all()
        waiting_on_retries = session.scalars(
            select(models.OutboxDelivery.subscriber)
            .where(models.OutboxDelivery.status == "pending", models.OutboxDelivery.attempts > 0)
            .group_by(models.OutboxDelivery.subscriber)
            .limit(PROBES_PER_SWEEP)
        ).all()
    statuses = job_statuses(connection, [relay_job_id(service_name, event_id, sub) for event_id, sub in rows])
    enqueued = 0
    for (event_id, subscriber), status in zip(rows, statuses, strict=True):
        # One read for all; only a job that is missing, finished or started (perhaps by a worker
        # that died) is looked at closer.
        if status not in WAITING_ITS_TURN and enqueue_relay_job(rt.settings, event_id, subscriber) is not None:
            enqueued += 1
    for subscriber in waiting_on_retries:
        if subscriber in rt.settings.service_urls:
            catchup.probe_and_watch(service_name, subscriber)
    record_sweep(connection, service_name)
    return enqueued


# --- for admins -------------------------------------------------------------------

outbox_blp = Blueprint("outbox", __name__, url_prefix="/api/v1/outbox", description="Events this service sends.")


class DeliverySchema(BaseSchema):
    id = fields.Integer()
    event_id = fields.UUID()
    event_type = fields.String(attribute="event.type")
    aggregate_id = fields.String(attribute="event.aggregate_id")
    occurred_at = fields.AwareDateTime(attribute="event.occurred_at")
    subscriber = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    last_attempt_at = fields.AwareDateTime(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)


class DeliveryQueryArgsSchema(BaseSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    subscriber = fields.String()


@outbox_blp.route("")
class OutboxDeliveries(MethodView):
    @require("admin")
    @outbox_blp.arguments(DeliveryQueryArgsSchema(), location="query")
    @outbox_blp.response(200, DeliverySchema(many=True))
    @outbox_blp.paginate()
    def get(self, args, pagination_parameters):
        """Deliveries of this service's events; `status=dead` lists the dead letters."""
        models = current_app.extensions["service"].models
        query = select(models.OutboxDelivery)
        for name in ("status", "subscriber"):
            if name in args:
                query = query.where(getattr(models.OutboxDelivery, name) == args[name])
        session = get_session()
        pagination_parameters.item_count = session.scalar(select(func.count()).select_from(query.subquery()))
        return session.scalars(
            query.order_by(models.OutboxDelivery.id.desc())
            .offset(pagination_parameters.first_item)
            .limit(pagination_parameters.page_size)
        ).all()


@outbox_blp.route("/<int:delivery_id>/redeliver")
class OutboxRedeliver(MethodView):
    @require("admin")
    @outbox_blp.response(200, DeliverySchema)
    def post(self, delivery_id):
        """Put a dead (or pending) delivery back in the queue."""
        models = current_app.extensions["service"].models
        settings = current_app.extensions["settings"]
        session = get_session()
        delivery = session.get(models.OutboxDelivery, delivery_id) or abort(404, message="No such delivery.")
        if delivery.status == "delivered":
            abort(409, message="This delivery has already been delivered.")
        delivery.status = "pending"
        after_commit(session, _enqueue_relay_later(settings, delivery.event_id, delivery.subscriber))
        commit(session)
        return delivery


def init_app(app, api: Api) -> None:
    api.register_blueprint(outbox_blp)
