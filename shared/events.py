"""The event outbox and inbox.

Sending: ``emit`` writes the event and one delivery row per subscriber in the caller's
transaction; after commit a relay job per delivery is enqueued. The relay POSTs the signed
event to the subscriber's ``/internal/events``, retried with backoff; after the last try the
delivery is ``dead`` and listed at ``/api/v1/outbox`` until an admin redelivers it. A periodic
sweep re-enqueues pending deliveries whose job was lost (Redis down or flushed), so a lost
Redis delays delivery and never loses it.

Receiving: ``/internal/events`` checks the signature, records the event id in the inbox and
applies the handler in one transaction; a redelivered id changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import timedelta

import requests
from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from marshmallow import fields, validate
from rq import Retry, get_current_job
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import guard, signing
from shared.api import BaseSchema
from shared.auth import require
from shared.db import after_commit, commit, get_session, utcnow
from shared.models import DELIVERY_STATUSES, SharedModels
from shared.queue import enqueue
from shared.settings import Settings

log = logging.getLogger(__name__)

RELAY_RETRY_INTERVALS = [5, 15, 60, 300, 900, 1800, 3600, 3600, 3600]
# Relays have a queue of their own, listened to after the services' queues, so that a burst of
# events (seeding the directory, a rebuild) never holds up notifications and chases.
EVENTS_QUEUE = "events"


def relay_retry_intervals() -> list[int]:
    import os

    configured = os.environ.get("RELAY_RETRY_INTERVALS")
    return [int(part) for part in configured.split(",")] if configured else RELAY_RETRY_INTERVALS


def relay_job_id(service: str, event_id: uuid.UUID | str, subscriber: str) -> str:
    return f"relay-{service}-{event_id}-{subscriber}"


def emit(
    session: Session,
    models: SharedModels,
    settings: Settings,
    event_type: str,
    aggregate_id: str | uuid.UUID,
    payload: dict,
):
    """Write an event and its deliveries in the caller's transaction."""
    event = models.OutboxEvent(
        id=uuid.uuid4(),
        type=event_type,
        aggregate_id=str(aggregate_id),
        payload=json.loads(json.dumps(payload, default=str)),
        occurred_at=utcnow(),
    )
    session.add(event)
    for subscriber in settings.subscribers:
        session.add(models.OutboxDelivery(event_id=event.id, subscriber=subscriber, status="pending", attempts=0))
        after_commit(session, _enqueue_relay_later(settings, event.id, subscriber))
    return event


def _enqueue_relay_later(settings: Settings, event_id: uuid.UUID, subscriber: str):
    def enqueue_relay() -> None:
        enqueue_relay_job(settings, event_id, subscriber)

    return enqueue_relay


def enqueue_relay_job(settings: Settings, event_id: uuid.UUID | str, subscriber: str) -> None:
    intervals = relay_retry_intervals()
    enqueue(
        settings.redis_url,
        EVENTS_QUEUE,
        "shared.events.relay_event",
        settings.service,
        str(event_id),
        subscriber,
        job_id=relay_job_id(settings.service, event_id, subscriber),
        retry=Retry(max=len(intervals), interval=intervals),
    )


class DeliveryFailed(Exception):
    pass


def relay_event(service_name: str, event_id: str, subscriber: str) -> str:
    """RQ job: deliver one event to one subscriber. Raises to make RQ retry it."""
    from shared.service import runtime

    rt = runtime(service_name)
    models = rt.service.models
    with rt.database.job_session() as session:
        delivery = session.scalars(
            select(models.OutboxDelivery)
            .where(
                models.OutboxDelivery.event_id == uuid.UUID(event_id),
                models.OutboxDelivery.subscriber == subscriber,
            )
            .with_for_update(skip_locked=True)
        ).first()
        if delivery is None or delivery.status != "pending":
            return "nothing to do"
        message = delivery.event.as_message(service_name)
        error = post_event(rt.settings, subscriber, message)
        delivery.attempts += 1
        delivery.last_attempt_at = utcnow()
        if error is None:
            delivery.status = "delivered"
            delivery.delivered_at = utcnow()
            delivery.last_error = None
            session.commit()
            return "delivered"
        delivery.last_error = error
        job = get_current_job()
        final_try = job is None or not job.retries_left
        if final_try:
            delivery.status = "dead"
        session.commit()
        log.warning(
            "relay %s to %s failed (attempt %s%s): %s",
            event_id,
            subscriber,
            delivery.attempts,
            ", dead" if final_try else "",
            error,
        )
        raise DeliveryFailed(error)


def post_event(settings: Settings, subscriber: str, message: dict) -> str | None:
    """POST a signed event; None on success, else the reason it failed."""
    url = settings.service_urls[subscriber] + "/internal/events"
    body = json.dumps(message).encode()
    try:
        response = requests.post(
            url, data=body, headers=signing.signed_headers(settings.event_secret, body), timeout=10
        )
    except requests.RequestException as error:
        return f"{type(error).__name__}: {error}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:300]}"


def sweep_outbox(service_name: str) -> int:
    """RQ cron job: re-enqueue pending deliveries whose relay job is not in Redis any more."""
    from shared.service import runtime

    rt = runtime(service_name)
    models = rt.service.models
    # Leave fresh events to the job enqueued after their commit.
    settle = utcnow() - timedelta(seconds=5)
    with rt.database.job_session() as session:
        rows = session.execute(
            select(models.OutboxDelivery.event_id, models.OutboxDelivery.subscriber)
            .join(models.OutboxEvent)
            .where(models.OutboxDelivery.status == "pending", models.OutboxEvent.occurred_at < settle)
            .order_by(models.OutboxDelivery.id)
            .limit(1000)
        ).all()
    for event_id, subscriber in rows:
        enqueue_relay_job(rt.settings, event_id, subscriber)
    return len(rows)


# --- receiving -------------------------------------------------------------------------

SIGNATURE_FORMAT = re.compile(r"sha256=[0-9a-f]{64}")


def signature_header_problem(headers) -> str | None:
    """What is wrong with the signature headers, judged without the body; None if nothing."""
    timestamp = headers.get(signing.TIMESTAMP_HEADER, "")
    given = headers.get(signing.SIGNATURE_HEADER, "")
    if not timestamp or not given:
        return f"{signing.TIMESTAMP_HEADER} and {signing.SIGNATURE_HEADER} headers are required"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return f"{signing.TIMESTAMP_HEADER} must be a unix timestamp"
    if abs(time.time() - int(timestamp)) > signing.MAX_SKEW_SECONDS:
        return "signature timestamp is too old or in the future"
    if not SIGNATURE_FORMAT.fullmatch(given):
        return f"{signing.SIGNATURE_HEADER} must be sha256= and 64 hexadecimal digits"
    return None


class EventMessageSchema(BaseSchema):
    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.Length(min=1, max=80))
    source = fields.String(required=True, validate=validate.Length(min=1, max=40))
    position = fields.Integer(load_default=None, validate=validate.Range(min=0, max=guard.MAX_ID))
    aggregate_id = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    payload = fields.Dict(required=True)


class EventReceiptSchema(BaseSchema):
    id = fields.UUID()
    result = fields.String(metadata={"description": "applied, duplicate or ignored"})


def apply_event(session: Session, models: SharedModels, handlers: dict, message: dict) -> str:
    """Record and apply an event once. Returns applied, duplicate or ignored."""
    event_id = uuid.UUID(str(message["id"]))
    if session.get(models.InboxEvent, event_id) is not None:
        return "duplicate"
    session.add(models.InboxEvent(event_id=event_id, type=message["type"], source=message["source"]))
    handler = handlers.get(message["type"])
    try:
        session.flush()
        if handler is not None:
            handler(session, message)
        session.commit()
    except IntegrityError:
        # The same event arrived twice at once: the other copy won.
        session.rollback()
        if session.get(models.InboxEvent, event_id) is not None:
            return "duplicate"
        raise
    return "applied" if handler else "ignored"


internal_blp = Blueprint("internal", __name__, url_prefix="/internal", description="Between services (signed).")


@internal_blp.route("/events")
class InternalEvents(MethodView):
    @internal_blp.response(200, EventReceiptSchema)
    @internal_blp.doc(security=[], description="Receive an event from another service. Signed with "
                      "HMAC-SHA256 over '<timestamp>.<body>' in X-Signature / X-Signature-Timestamp.")
    def post(self):
        settings = current_app.extensions["settings"]
        # Nothing of the body is read until the signature headers look right and its length is
        # known and within the limit: an unsigned 400 MB POST costs the service nothing.
        problem = signature_header_problem(request.headers)
        if problem:
            abort(401, message=f"Event refused: {problem}.")
        if request.content_length is None:
            abort(411, message="Event refused: send a Content-Length header (chunked bodies are not accepted).")
        elif request.content_length > guard.MAX_CONTENT_LENGTH:
            abort(413)
        body = request.get_data(cache=True)
        problem = signing.verify(settings.event_secret, request.headers, body)
        if problem:
            abort(401, message=f"Event refused: {problem}.")
        raw = guard.load_json(body)
        try:
            message = EventMessageSchema().load(raw)
        except Exception as error:  # marshmallow.ValidationError
            abort(422, errors={"json": getattr(error, "messages", str(error))})
        service = current_app.extensions["service"]
        raw["id"] = str(message["id"])
        result = apply_event(get_session(), service.models, service.event_handlers, raw)
        return {"id": message["id"], "result": result}


class EventPageArgsSchema(BaseSchema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=guard.MAX_ID))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=5000))


@internal_blp.route("/events/log")
class InternalEventLog(MethodView):
    @internal_blp.arguments(EventPageArgsSchema, location="query")
    @internal_blp.doc(security=[], description="Every event this service has emitted, in order, after a position: "
                      "how a consumer rebuilds its read model. Signed like /internal/events, over the path and "
                      "query string.")
    def get(self, args):
        settings = current_app.extensions["settings"]
        problem = signing.verify(settings.event_secret, request.headers, request.full_path.encode())
        if problem:
            abort(401, message=f"Refused: {problem}.")
        service = current_app.extensions["service"]
        model = service.models.OutboxEvent
        rows = get_session().scalars(
            select(model).where(model.position > args["after"]).order_by(model.position).limit(args["limit"])
        ).all()
        return {"events": [row.as_message(service.name) for row in rows],
                "next_after": rows[-1].position if rows else args["after"]}


def fetch_event_log(settings: Settings, source: str, after: int = 0, limit: int = 1000) -> dict:
    """One page of another service's event log (for rebuilding a read model)."""
    path = f"/internal/events/log?after={after}&limit={limit}"
    headers = signing.signed_headers(settings.event_secret, path.encode())
    response = requests.get(settings.service_urls[source] + path, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


# --- the outbox, for admins ---------------------------------------------------------------

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
    @outbox_blp.arguments(DeliveryQueryArgsSchema, location="query")
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
    api.register_blueprint(internal_blp)
    api.register_blueprint(outbox_blp)
