"""The recipient web form at /form/<signed token> (no account needed)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Registered by create_app; the form itself is built in the next step."""
