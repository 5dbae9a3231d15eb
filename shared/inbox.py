"""The event inbox: what a service receives, and the log of what it sent, for rebuilds.

``/internal/events`` checks the signature, records the event id in the inbox and applies the
handler in one transaction; a redelivered id changes nothing. ``/internal/events/log`` pages
through every event the service has emitted (``fetch_event_log`` reads another service's).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import requests
from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from marshmallow import fields, validate
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import guard, signing
from shared.api import BaseSchema
from shared.db import among, get_session, insert_rows, utcnow
from shared.logs import bind_request_id, get_logger
from shared.models import InboxEventMixin, SharedModels
from shared.settings import Settings

log = get_logger(__name__)

# The most events one POST to /internal/events/batch carries (the relay sends at most this many,
# and no more than a body's limit, guard.MAX_CONTENT_LENGTH, holds). Under load the relay's
# batches were all full at 100 and the one RQ worker fell behind the filings: each batch cost a
# job, its own reads and a next job's, whatever its size (docs/performance.md, twelfth round).
MAX_BATCH = 500

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
    # Events from before request ids (and rebuilt logs) have none; an insane one is ignored.
    request_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))


class EventReceiptSchema(BaseSchema):
    id = fields.UUID()
    result = fields.String(metadata={"description": "applied, duplicate or ignored"})


def apply_event(
    session: Session, models: SharedModels, handlers: dict, message: dict, lock: Callable[[Session], None] | None = None
) -> str:
    """Record and apply an event once. Returns applied, duplicate or ignored. ``lock``: the
    service's ``inbox_lock``, taken before the inbox is read."""
    event_id = uuid.UUID(str(message["id"]))
    if lock is not None:
        lock(session)
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


def unseen_positions(session: Session, inbox_event: type[InboxEventMixin], ids: list[uuid.UUID]) -> list[int]:
    """The positions in ``ids`` of the events the inbox has not recorded yet, each id once (at its
    first place: a batch may carry the same event twice). One query (per 900 events on SQLite)."""
    known: set[uuid.UUID] = set()
    for condition in among(session, inbox_event.event_id, ids):
        ids_known = select(inbox_event.event_id).where(condition)
        known.update(session.connection().scalars(ids_known))  # Core: no ORM execution needed
    unseen: list[int] = []
    for position, event_id in enumerate(ids):
        if event_id not in known:
            known.add(event_id)
            unseen.append(position)
    return unseen


def record_received(session: Session, model: type[InboxEventMixin], messages: list[dict], ids: list[uuid.UUID]) -> None:
    """The inbox's rows for these events (``ids``: their ids, parsed), in one statement; an event
    already there refuses the whole statement (``IntegrityError``), as another applier got to it
    first."""
    received_at = utcnow()
    insert_rows(
        session,
        model,
        [
            {"event_id": event_id, "type": m["type"], "source": m["source"], "received_at": received_at}
            for event_id, m in zip(ids, messages, strict=True)
        ],
    )


def apply_events_once(
    session: Session,
    models: SharedModels,
    handlers: dict,
    messages: list[dict],
    batch_handler: Callable[[Session, list[dict]], None] | None = None,
    lock: Callable[[Session], None] | None = None,
) -> list[str]:
    """Record and apply a batch of events, each once, in one transaction; each event's result
    (applied, duplicate, ignored or failed) in the batch's order.

    All at once first (``batch_handler`` applies the handled ones together, e.g. the metrics
    projection writes its figures once for the batch); if that fails, one at a time, each in a
    savepoint, so one event the handlers refuse does not hold up the rest: it is answered
    ``failed`` and its sender tries it again on its own.

    ``lock`` (the service's ``inbox_lock``) is taken before the inbox is read or written: taken
    after, a transaction holding it could wait for another's uncommitted inbox row of the same
    event while the other waits for the lock.
    """
    if lock is not None:
        lock(session)
    ids = [uuid.UUID(str(message["id"])) for message in messages]
    results = ["duplicate"] * len(messages)
    fresh = unseen_positions(session, models.InboxEvent, ids)

    def record_and_apply(positions: list[int]) -> None:
        record_received(
            session, models.InboxEvent, [messages[position] for position in positions], [ids[p] for p in positions]
        )
        handled = [messages[p] for p in positions if messages[p]["type"] in handlers]
        if batch_handler is not None:
            batch_handler(session, handled)
        else:
            for message in handled:
                handlers[message["type"]](session, message)
        for position in positions:
            results[position] = "applied" if messages[position]["type"] in handlers else "ignored"

    if fresh:
        try:
            with session.begin_nested():
                record_and_apply(fresh)
        except Exception:  # noqa: BLE001 - find which event it was, one at a time
            for position in fresh:
                try:
                    with session.begin_nested():
                        record_and_apply([position])
                except IntegrityError:
                    if not unseen_positions(session, models.InboxEvent, [ids[position]]):
                        results[position] = "duplicate"  # the same event arrived at once by another way
                    else:  # a constraint the handler broke: answered "failed", tried again alone
                        log.exception("event not applied", type=messages[position]["type"], event_id=str(ids[position]))
                        results[position] = "failed"
                except Exception:  # noqa: BLE001 - answered "failed"; the sender retries it alone
                    log.exception("event not applied", type=messages[position]["type"], event_id=str(ids[position]))
                    results[position] = "failed"
    session.commit()
    return results


def _signed_json_body():
    """The request's JSON body, once its signature checks out.

    Nothing of the body is read until the signature headers look right and its length is known
    and within the limit: an unsigned 400 MB POST costs the service nothing.
    """
    settings = current_app.extensions["settings"]
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
    return guard.load_json(body)


internal_blp = Blueprint("internal", __name__, url_prefix="/internal", description="Between services (signed).")


@internal_blp.route("/events")
class InternalEvents(MethodView):
    @internal_blp.response(200, EventReceiptSchema)
    @internal_blp.doc(
        security=[],
        description="Receive an event from another service. Signed with "
        "HMAC-SHA256 over '<timestamp>.<body>' in X-Signature / X-Signature-Timestamp.",
    )
    def post(self):
        raw = _signed_json_body()
        try:
            message = EventMessageSchema().load(raw)
        except Exception as error:  # marshmallow.ValidationError
            abort(422, errors={"json": getattr(error, "messages", str(error))})
        service = current_app.extensions["service"]
        raw["id"] = str(message["id"])
        # The request that caused the event, so that what this service logs and emits while
        # applying it carries the same id (the relay sends it as X-Request-ID too).
        bind_request_id(message["request_id"])
        result = apply_event(get_session(), service.models, service.event_handlers, raw, service.inbox_lock)
        # One line per event (the access log's line for this POST is left to DEBUG): applied,
        # or at DEBUG a duplicate or an event this service does not handle.
        log.log(
            logging.INFO if result == "applied" else logging.DEBUG,
            f"event {result}",
            type=message["type"],
            event_id=raw["id"],
            source=message["source"],
        )
        return {"id": message["id"], "result": result}


class EventBatchSchema(BaseSchema):
    events = fields.List(
        fields.Nested(EventMessageSchema), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class EventBatchReceiptSchema(BaseSchema):
    results = fields.List(fields.Nested(EventReceiptSchema))


@internal_blp.route("/events/batch")
class InternalEventBatch(MethodView):
    @internal_blp.response(200, EventBatchReceiptSchema)
    @internal_blp.doc(
        security=[],
        description=f"Receive up to {MAX_BATCH} events from another service at once, signed as "
        "/internal/events is; each is applied once, and answered applied, duplicate, ignored or "
        "failed (a failed one is sent again on its own).",
    )
    def post(self):
        raw = _signed_json_body()
        try:
            EventBatchSchema().load(raw)
        except Exception as error:  # marshmallow.ValidationError
            abort(422, errors={"json": getattr(error, "messages", str(error))})
        messages = raw["events"]
        service = current_app.extensions["service"]
        results = apply_events_once(
            get_session(),
            service.models,
            service.event_handlers,
            messages,
            service.batch_event_handler,
            service.inbox_lock,
        )
        for message, result in zip(messages, results, strict=True):
            log.log(
                logging.INFO if result == "applied" else logging.DEBUG,
                f"event {result}",
                type=message["type"],
                event_id=str(message["id"]),
                source=message["source"],
            )
        return {"results": [{"id": m["id"], "result": r} for m, r in zip(messages, results, strict=True)]}


class EventPageArgsSchema(BaseSchema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=guard.MAX_ID))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=5000))


@internal_blp.route("/events/log")
class InternalEventLog(MethodView):
    @internal_blp.arguments(EventPageArgsSchema(), location="query")
    @internal_blp.doc(
        security=[],
        description="Every event this service has emitted, in order, after a position: "
        "how a consumer rebuilds its read model. Signed like /internal/events, over the path and "
        "query string.",
    )
    def get(self, args):
        settings = current_app.extensions["settings"]
        problem = signing.verify(settings.event_secret, request.headers, request.full_path.encode())
        if problem:
            abort(401, message=f"Refused: {problem}.")
        service = current_app.extensions["service"]
        model = service.models.OutboxEvent
        rows = (
            get_session()
            .scalars(select(model).where(model.position > args["after"]).order_by(model.position).limit(args["limit"]))
            .all()
        )
        return {
            "events": [row.as_message(service.name) for row in rows],
            "next_after": rows[-1].position if rows else args["after"],
        }


def fetch_event_log(settings: Settings, source: str, after: int = 0, limit: int = 1000) -> dict:
    """One page of another service's event log (for rebuilding a read model)."""
    path = f"/internal/events/log?after={after}&limit={limit}"
    headers = signing.signed_headers(settings.event_secret, path.encode())
    response = requests.get(settings.service_urls[source] + path, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


def init_app(app, api: Api) -> None:
    api.register_blueprint(internal_blp)
