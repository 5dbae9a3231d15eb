"""What time it is, for rules that depend on it: the real time, unless the app was given
another clock (``app.extensions["clock"]``, a function returning an aware datetime), as the
chase tests do to move time on without waiting for it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, has_app_context


def now() -> datetime:
    if has_app_context():
        clock = current_app.extensions.get("clock")
        if clock is not None:
            return clock()
    return datetime.now(UTC)
