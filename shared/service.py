"""What a service declares about itself, and the process-wide runtime jobs use.

A web process builds its app with ``create_service_app``; a worker process looks a service up
with ``runtime(name)`` to get its settings, a fork-safe database and its event handlers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.orm import Session

from shared import audit, db, events, guard, idempotency
from shared.api import make_api
from shared.db import Database
from shared.models import SharedModels
from shared.queue import redis_connection
from shared.redact import mask_form_tokens
from shared.settings import Settings, load_settings

EventHandler = Callable[[Session, dict], None]


@dataclass
class Service:
    name: str
    title: str
    description: str
    base: type
    models: SharedModels
    event_handlers: dict[str, EventHandler] = field(default_factory=dict)


def create_service_app(service: Service, import_name: str, overrides: dict | None = None) -> Flask:
    """The parts every service has: settings, database, the input guard and body limit, API and
    errors, audit, idempotency, health checks, the event inbox and the outbox admin views."""
    # No app-wide /static: each page that needs assets serves them from its own blueprint.
    app = Flask(import_name, static_folder=None)
    overrides = dict(overrides or {})
    settings = load_settings(service.name, overrides.pop("settings", None))
    app.config.update(
        JSON_SORT_KEYS=False,
        SECRET_KEY=settings.session_secret,
        TESTING=settings.testing,
        **overrides,
    )
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    guard.init_app(app)
    app.extensions["settings"] = settings
    app.extensions["service"] = service
    database = Database(settings)
    db.init_app(app, database)
    api = make_api(app, service.title, service.description)
    audit.init_app(app)
    audit.register_api(api)
    idempotency.init_app(app)
    events.init_app(app, api)
    _register_health(app, database, settings)
    app.after_request(_api_security_headers)
    app.log_exception = _log_exception_without_credentials(app)  # type: ignore[method-assign]  # this app only
    _configure_logging()
    app.extensions["api"] = api
    return app


def _api_security_headers(response):
    """API answers carry intelligence and figures: no cache keeps them, no browser sniffs them."""
    if request.path.startswith(("/api/", "/internal/")):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _register_health(app: Flask, database: Database, settings: Settings) -> None:
    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=settings.service)

    @app.get("/readyz")
    def readyz():
        checks = {}
        try:
            database.ping()
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(error).__name__}"
        try:
            redis_connection(settings.redis_url).ping()
            checks["redis"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["redis"] = f"unavailable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


def _log_exception_without_credentials(app: Flask):
    """Flask's "Exception on <path>" log line, with a form link's token masked."""

    def log_exception(exc_info) -> None:
        app.logger.error("Exception on %s [%s]", mask_form_tokens(request.path), request.method, exc_info=exc_info)

    return log_exception


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@dataclass
class Runtime:
    """A service as a worker process sees it."""

    service: Service
    settings: Settings
    database: Database


_runtimes: dict[str, Runtime] = {}


def runtime(name: str) -> Runtime:
    """The service's runtime in this process, built once. Its engine uses ``NullPool`` so
    RQ's fork per job never shares a connection between parent and child."""
    if name not in _runtimes:
        module = importlib.import_module(f"services.{name}")
        service: Service = module.SERVICE
        settings = load_settings(name)
        _runtimes[name] = Runtime(service, settings, Database(settings, for_worker=True))
    return _runtimes[name]


def set_runtime(name: str, value: Runtime | None) -> None:
    """Tests point jobs at the database and settings they built."""
    if value is None:
        _runtimes.pop(name, None)
    else:
        _runtimes[name] = value
