"""What a service declares about itself, the registry of services a process runs, and the
process-wide runtime jobs use.

``services/__init__.py`` declares the registry (``use_services``); nothing in ``shared`` names
a service. A web process builds its app with ``create_service_app``; a job looks its service up
with ``runtime(name)`` to get its settings, its database and its event handlers.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click
import orjson
from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from shared import audit, auth, clock, db, guard, health, idempotency, inbox, logs, monitoring, outbox
from shared.api import make_api
from shared.db import Database
from shared.models import SharedModels
from shared.queue import redis_connection
from shared.redact import mask_form_tokens
from shared.settings import Settings, load_settings

if TYPE_CHECKING:
    from shared.cron import Schedule

EventHandler = Callable[[Session, dict], None]


def _no_schedules(settings: Settings) -> list[Schedule]:
    return []


@dataclass(frozen=True)
class Service:
    """Everything the processes that run a service need to know of it."""

    name: str
    title: str
    description: str
    port: int  # the default; ``<NAME>_PORT`` moves it
    create_app: Callable[..., Flask]
    metadata: MetaData  # its models' tables, which its migrations build
    models: SharedModels
    migrations: Path  # its Alembic environment
    event_handlers: dict[str, EventHandler] = field(default_factory=dict)
    # Applies a batch of handled events at once (``/internal/events/batch``); else one by one.
    batch_event_handler: Callable[[Session, list[dict]], None] | None = None
    # Taken first in the transaction that records and applies events, before the inbox is read
    # or written, where the handlers must apply one batch at a time (the metrics projection).
    inbox_lock: Callable[[Session], None] | None = None
    # Which services receive its events (``<NAME>_SUBSCRIBERS`` overrides). A service only
    # appears once it exists; its events wait in the sender's outbox while it is down.
    subscribers: tuple[str, ...] = ()
    signs_webhooks: bool = False  # so it needs WEBHOOK_SECRETS_KEY
    jobs: ModuleType | None = None  # its RQ jobs, loaded before a worker takes its first job
    schedules: Callable[[Settings], list[Schedule]] = _no_schedules  # its periodic jobs


_registry: dict[str, Service] = {}


def use_services(services: Iterable[Service]) -> None:
    """Make ``services`` the ones this process knows: jobs find theirs by name here, and the
    settings learn every service's port and subscribers from them."""
    _registry.clear()
    _registry.update((service.name, service) for service in services)


def registered() -> tuple[Service, ...]:
    return tuple(_registry.values())


def service_named(name: str) -> Service:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(_registry) or "none: import the services package first"
        raise LookupError(f"no service named {name!r} (known: {known})") from None


def settings_for(name: str, overrides: dict | None = None) -> Settings:
    """One service's settings, as every process of it reads them."""
    return load_settings(name, registered(), overrides)


def create_service_app(service: Service, import_name: str, overrides: dict | None = None) -> Flask:
    """The parts every service has: settings, database, the input guard and body limit, API and
    errors, audit, idempotency, health checks, the event inbox and the outbox admin views, and
    the ``migrate`` command."""
    # No app-wide /static: each page that needs assets serves them from its own blueprint.
    app = Flask(import_name, static_folder=None)
    app.session_interface = CookieSessionsWhenSent()
    overrides = dict(overrides or {})
    settings = settings_for(service.name, overrides.pop("settings", None))
    app.config.update(
        JSON_SORT_KEYS=False,
        SECRET_KEY=settings.session_secret,
        TESTING=settings.testing,
        **overrides,
    )
    app.json = OrjsonResponses(app)
    logs.configure_logging(service.name, settings)
    guard.init_app(app)
    logs.init_app(app, service.name)  # after the guard: its request id hook goes first
    clock.init_app(app, settings.app_env)
    app.extensions["settings"] = settings
    app.extensions["verified_tokens"] = auth.VerifiedTokens()
    app.extensions["service"] = service
    database = Database(settings)
    db.init_app(app, database)
    api = make_api(app, service.title, service.description)
    audit.init_app(app)
    audit.register_api(api)
    idempotency.init_app(app)
    inbox.init_app(app, api)
    outbox.init_app(app, api)
    monitoring.init_app(
        app, settings, database, service.models, [*(each.name for each in registered()), outbox.EVENTS_QUEUE]
    )
    _register_health(app, service, database, settings)
    _register_migrate_command(app, service)
    app.after_request(_api_security_headers)
    app.log_exception = _log_exception_without_credentials(app)  # type: ignore[method-assign]  # this app only
    app.extensions["api"] = api
    return app


class OrjsonResponses(DefaultJSONProvider):
    """Flask's JSON, with the API's answers written by orjson: keys in the order given, compact,
    a date as Flask writes it (``default``), one line. The standard library's encoder was the
    largest single part of an answer's own cost (docs/performance.md, tenth round). Debug mode's
    indented answers and ``dumps`` elsewhere are Flask's own. What orjson writes differently: a
    character beyond ASCII as itself (UTF-8) rather than as a ``\\u`` escape, and NaN as
    ``null`` (the standard library wrote ``NaN``, which is not JSON)."""

    sort_keys = False
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE

    def response(self, *args, **kwargs):
        value = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(value)
        try:
            body = orjson.dumps(value, default=self.default, option=self._OPTIONS)
        except TypeError:  # what orjson cannot write (an integer past 64 bits): Flask's way
            return super().response(value)
        response_class = typing.cast(type[Response], self._app.response_class)  # a Flask app's, not sansio's
        return response_class(body, mimetype=self.mimetype)


class CookieSessionsWhenSent(SecureCookieSessionInterface):
    """Flask's signed cookie session, its signer built only for a request that sent the cookie.
    Flask builds it anew on every request (3% of a metrics read's CPU under `make bench`), and
    an API request never has one: without the cookie, the session is new and empty either way."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def _register_migrate_command(app: Flask, service: Service) -> None:
    @app.cli.command("migrate")
    def migrate_command():
        """Apply this service's migrations."""
        from shared.migrate import upgrade

        upgrade(service, app.extensions["settings"])
        click.echo(f"{service.name}: migrations applied")


def _api_security_headers(response):
    """API answers carry intelligence and figures: no cache keeps them, no browser sniffs them."""
    if request.path.startswith(("/api/", "/internal/")):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _register_health(app: Flask, service: Service, database: Database, settings: Settings) -> None:
    # Readiness forgives a missing sweep for 3 intervals from here (shared.health); tests move it.
    app.extensions["started_at"] = time.time()

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=settings.service)

    @app.get("/readyz")
    def readyz():
        checks = health.readiness(
            service, settings, database, redis_connection(settings.redis_url), app.extensions["started_at"]
        )
        ready = all(check.ok for check in checks)
        body = {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}
        return jsonify(status="ready" if ready else "not ready", checks=body), 200 if ready else 503


def _log_exception_without_credentials(app: Flask):
    """Flask's "Exception on <path>" log line, with a form link's token masked."""

    def log_exception(exc_info) -> None:
        app.logger.error("Exception on %s [%s]", mask_form_tokens(request.path), request.method, exc_info=exc_info)

    return log_exception


@dataclass
class Runtime:
    """A service as a worker process sees it."""

    service: Service
    settings: Settings
    database: Database


_runtimes: dict[str, Runtime] = {}


def runtime(name: str) -> Runtime:
    """The service's runtime in this process, built once."""
    if name not in _runtimes:
        service = service_named(name)
        settings = settings_for(name)
        _runtimes[name] = Runtime(service, settings, Database(settings, for_worker=True))
    return _runtimes[name]


def set_runtime(name: str, value: Runtime | None) -> None:
    """Tests point jobs at the database and settings they built."""
    if value is None:
        _runtimes.pop(name, None)
    else:
        _runtimes[name] = value
