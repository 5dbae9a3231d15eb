"""What time it is, for rules that depend on it: the real time, unless the app was given
another clock (``app.extensions["clock"]``, a function returning an aware datetime), as the
chase tests do to move time on without waiting for it.

**The demo clock** (development and test only). ``make demo`` loads a year of history through
the real APIs, so each of its requests says when it happened: the ``X-Demo-Clock`` header, an
ISO 8601 time with its zone, not in the future. For that request every time the services stamp
(``shared.db.utcnow``: issued, acknowledged, filed, the events' times) and every rule that asks
``now()`` read that moment. ``demo_clock(at)`` does the same for code run in-process (the demo's
chase sweeps). In production the header is refused with a 400 and nothing is done: a caller must
never be able to write history.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, g, has_app_context, request

DEMO_CLOCK_HEADER = "X-Demo-Clock"
DEMO_CLOCK_ENVS = ("development", "test")
_FUTURE_LEEWAY = timedelta(seconds=60)  # another host's clock may run a little ahead

_demo_now: ContextVar[datetime | None] = ContextVar("demo_now", default=None)


def demo_now() -> datetime | None:
    """The demo clock's moment while one is set, else None."""
    return _demo_now.get()


def now() -> datetime:
    demo = _demo_now.get()
    if demo is not None:
        return demo
    if has_app_context():
        clock = current_app.extensions.get("clock")
        if clock is not None:
            return clock()
    return datetime.now(UTC)


@contextmanager
def demo_clock(at: datetime) -> Iterator[None]:
    """Run the block as if it were ``at`` (an aware datetime)."""
    if at.tzinfo is None:
        raise ValueError("the demo clock needs a time with its zone")
    token = _demo_now.set(at.astimezone(UTC))
    try:
        yield
    finally:
        _demo_now.reset(token)


def parse_demo_clock(value: str, real_now: datetime) -> datetime:
    """The moment an ``X-Demo-Clock`` header names; ValueError saying what is wrong."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{DEMO_CLOCK_HEADER} must be an ISO 8601 time, e.g. 2026-03-02T09:30:00+00:00") from None
    if at.tzinfo is None:
        raise ValueError(f"{DEMO_CLOCK_HEADER} must give its time zone, e.g. +00:00")
    if at > real_now + _FUTURE_LEEWAY:
        raise ValueError(f"{DEMO_CLOCK_HEADER} must not be in the future")
    return at.astimezone(UTC)


def init_app(app: Flask, app_env: str) -> None:
    """Honour ``X-Demo-Clock`` in development and test; refuse it in production."""
    from flask_smorest import abort

    @app.before_request
    def set_demo_clock():
        value = request.headers.get(DEMO_CLOCK_HEADER)
        if value is None:
            return None
        if app_env not in DEMO_CLOCK_ENVS:
            abort(400, message=f"{DEMO_CLOCK_HEADER} is honoured only in development.")
        try:
            at = parse_demo_clock(value, datetime.now(UTC))
        except ValueError as error:
            abort(400, message=str(error))
        g.demo_clock_token = _demo_now.set(at)
        return None

    @app.teardown_request
    def reset_demo_clock(_error=None):
        token = g.pop("demo_clock_token", None)
        if token is not None:
            _demo_now.reset(token)
