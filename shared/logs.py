"""Logging for every process, and the request id every log line of a request carries.

``configure_logging(process_name, settings_or_env)`` sends structlog's loggers and the standard
library's (RQ, werkzeug, gunicorn, SQLAlchemy, this project's ``logging.getLogger``) through one
renderer: one JSON object per line in test and production (``timestamp``, ``level``,
``process``, ``logger``, ``event``, and ``request_id``, ``service``, ``job_id`` when known),
readable console lines when ``APP_ENV=development`` (``LOG_FORMAT=json|console`` overrides,
``LOG_LEVEL`` sets the level, INFO by default).

The request id is taken from a sane ``X-Request-ID`` header or made, returned in the answer's
``X-Request-ID``, and bound in structlog's context variables for the request. ``shared.outbox``
stores the one bound when an event is emitted, ``shared.queue`` puts it in each job's meta, and
the consumer (``shared.inbox``) and the worker bind it again: one outcome is followed by it
through every service and the worker (docs/observability.md).

Nothing logged carries a form link's token (``shared.redact``) or a value under a key that
names a credential: the renderer masks both, whoever logged them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.redact import mask_form_tokens

if TYPE_CHECKING:
    from flask import Flask, Response

REQUEST_ID_HEADER = "X-Request-ID"
# Printable ASCII without spaces, at most 128 characters: what a proxy or a client sends as a
# request id. Anything else is ignored and a new id made, so a log line never carries a
# control character or a page of text someone put in a header.
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# A value under one of these keys is never written, whatever logged it.
_CREDENTIAL_KEYS = re.compile(r"(?i)authori[sz]ation|password|secret|token|cookie|api[_-]?key")
_REDACTED = "[redacted]"
# The first keys of every JSON line, in this order; the rest follow as logged.
_LEADING_KEYS = ("timestamp", "level", "process", "logger", "event")
# Our handler on the root logger, found again when the configuration is applied twice (every
# app factory call configures; tests build many apps in one process).
_HANDLER_NAME = "ofs-structured"

_process = {"name": "python", "pid": os.getpid()}


def configure_logging(process_name: str, settings_or_env: Any = None) -> None:
    """Send every log line of this process through one renderer, named ``process_name``.

    ``settings_or_env`` is a ``Settings`` (its ``app_env``) or a mapping like ``os.environ``;
    without it the environment is read."""
    _process["name"] = process_name
    app_env = _app_env(settings_or_env)
    log_format = (os.environ.get("LOG_FORMAT") or ("console" if app_env == "development" else "json")).lower()
    level = logging.getLevelName((os.environ.get("LOG_LEVEL") or "INFO").upper())
    if not isinstance(level, int):
        level = logging.INFO
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(json_lines=log_format != "console"))
    root = logging.getLogger()
    # Only our own handler is replaced: others (pytest's capture, an operator's) stay.
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Library loggers that write a line per statement or per connection at INFO.
    for name in ("sqlalchemy.engine", "urllib3", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def formatter(*, json_lines: bool = True) -> structlog.stdlib.ProcessorFormatter:
    """The one renderer: structlog's events and standard-library records alike."""
    renderer: Processor
    if json_lines:
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
        final: list[Processor] = [structlog.processors.format_exc_info, _mask_credentials, _leading_keys, renderer]
    else:
        # Plain tracebacks: a pretty one may print local variables, and locals hold secrets.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        final = [_mask_credentials, renderer]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


def _json_line(value: dict, **kwargs: Any) -> str:
    """structlog's JSON line, written by orjson (the standard library's encoder was a tenth of
    every access line's cost: docs/performance.md, tenth round). A date, time or UUID is written
    as its ISO or canonical text; anything else orjson does not know goes through structlog's
    fallback (``kwargs["default"]``: its ``repr``), as before; what orjson refuses outright (an
    integer past 64 bits) through the standard library."""
    fallback = kwargs.get("default")
    try:
        return orjson.dumps(value, default=fallback, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, **(kwargs | {"default": functools.partial(_as_text, fallback=fallback)}))


def _as_text(value: Any, fallback: Callable[[Any], Any] | None) -> Any:
    """The standard library's way to what orjson writes as text (a date, a UUID), so that a line
    written by either reads the same."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if fallback is None:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return fallback(value)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_process,
    ]


def _app_env(settings_or_env: Any) -> str:
    if isinstance(settings_or_env, Mapping):
        return str(settings_or_env.get("APP_ENV") or "production").lower()
    if settings_or_env is not None and hasattr(settings_or_env, "app_env"):
        return str(settings_or_env.app_env)
    return (os.environ.get("APP_ENV") or "production").lower()


def _add_process(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("process", _process["name"])
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def _mask_credentials(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if isinstance(key, str) and _CREDENTIAL_KEYS.search(key) and value is not None:
            event_dict[key] = _REDACTED
        elif isinstance(value, str):
            event_dict[key] = mask_form_tokens(value)
    return event_dict


def _leading_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


# --- the request id ---------------------------------------------------------------------------


def sane_request_id(value: object) -> str | None:
    """``value`` if it may serve as a request id, else None."""
    return value if isinstance(value, str) and _SANE_REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The request id bound in this context (a request, a job, an event being applied)."""
    return structlog.contextvars.get_contextvars().get("request_id")


def bind_request_id(value: object) -> None:
    """Carry on ``value`` as the request id, if it is a sane one."""
    request_id = sane_request_id(value)
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id)


@contextmanager
def job_context(**values: Any) -> Iterator[None]:
    """Only ``values`` (those not None) in the log context while a job runs, then what was
    there before: a job never inherits the previous job's or request's id."""
    before = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{key: value for key, value in values.items() if value is not None})
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


def init_app(app: Flask, service_name: str) -> None:
    """Bind a request id (and the service) for each request and return it in the answer."""
    # Here rather than at the top: gunicorn's master, the worker and cron log without Flask.
    from flask import request

    def bind_request() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=sane_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id(),
            service=service_name,
        )

    def return_request_id(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    def unbind_request(_error: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()

    # Before every other hook (the input guard inserts itself first too): a request it refuses
    # still has an id in the answer and in the lines logged about it.
    app.before_request_funcs.setdefault(None, []).insert(0, bind_request)
    app.after_request(return_request_id)
    app.teardown_request(unbind_request)
