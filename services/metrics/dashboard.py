"""The leadership dashboard at /dashboard (built in a later commit)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Registered by create_app."""
