"""Fixtures for every test: real PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set,
else a SQLite file per service and an embedded redis-server.

The environment is fixed once, before any app is built, because the web app and the RQ jobs
(run in-process by ``run_jobs``) read their settings from it alike.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser, server, shots  # noqa: F401 - the browser tests' fixtures

_TMP = Path(tempfile.mkdtemp(prefix="nclcc-tests-"))
_EMBEDDED_REDIS = None


def pytest_configure(config):
    global _EMBEDDED_REDIS
    os.environ["VAR_DIR"] = str(_TMP)
    os.environ["MAIL_SINK_DIR"] = str(_TMP / "mail")
    # Retries run at once in tests: RQ re-enqueues a job whose retry interval is 0.
    os.environ["RELAY_RETRY_INTERVALS"] = "0,0,0"
    os.environ["NOTIFY_RETRY_INTERVALS"] = "0,0"
    os.environ["APP_ENV"] = "test"  # the development secrets, without production's checks
    from services import SERVICES

    # Under pytest-xdist (`make test` runs TEST_WORKERS of them) each worker has schemas, a Redis
    # database, PostgreSQL application name and process metrics ports of its own.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    suffix = f"_{worker}" if worker else ""
    for service in SERVICES:
        os.environ[f"{service.name.upper()}_DATABASE_SCHEMA"] = f"test_{service.name}{suffix}"
    os.environ["PGAPPNAME"] = f"tests{suffix}"
    if worker:
        from shared.devredis import free_port

        os.environ["WORKER_METRICS_PORT"] = str(free_port())
        os.environ["CRON_METRICS_PORT"] = str(free_port())
        if os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = _worker_redis_url(os.environ["REDIS_URL"], int(worker.removeprefix("gw")))
    if not os.environ.get("REDIS_URL"):
        from shared.devredis import EmbeddedRedis

        _EMBEDDED_REDIS = EmbeddedRedis().start()
        os.environ["REDIS_URL"] = _EMBEDDED_REDIS.url
    consumer = EventConsumer().start()
    config._event_consumer = consumer
    # Events each service emits go to the stand-in consumer; tests that need the real outcomes
    # service feed it with `pump_events`.
    os.environ["OUTCOMES_URL"] = consumer.url
    os.environ["METRICS_URL"] = consumer.url
    os.environ["DISSEMINATION_SUBSCRIBERS"] = "outcomes"
    os.environ["OUTCOMES_SUBSCRIBERS"] = "metrics"


def _worker_redis_url(url: str, index: int) -> str:
    """REDIS_URL's database number plus the worker's index (Redis has 16 databases: 0-15)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if base + index > 15:
        raise pytest.UsageError(f"REDIS_URL database {base} leaves no database for test worker {index}")
    return urlunsplit(parts._replace(path=f"/{base + index}"))


def pytest_unconfigure(config):
    consumer = getattr(config, "_event_consumer", None)
    if consumer:
        consumer.stop()
    if _EMBEDDED_REDIS:
        _EMBEDDED_REDIS.stop()


def pytest_collection_modifyitems(config, items):
    """Tests that drive Chromium are marked ``browser`` (CI's second pass, on the embedded
    defaults, leaves them to the first: the pages do not depend on the database)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def pytest_report_header(config):
    return [
        f"database: {os.environ.get('DATABASE_URL') or 'SQLite files in ' + str(_TMP)}",
        f"redis: {os.environ['REDIS_URL']}{' (embedded)' if _EMBEDDED_REDIS else ''}",
    ]


class EventConsumer:
    """A stand-in subscriber on a loopback port: checks each event's signature and keeps it.
    It can be stopped and started again on the same port, like a service going down."""

    def __init__(self):
        from shared.devredis import free_port

        self.port = free_port()
        self.received: list[dict] = []
        self.server = None
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self):
        from flask import Flask, request

        from shared import signing

        app = Flask("event-consumer")

        @app.get("/healthz")
        def healthz():
            return {"status": "ok"}

        @app.post("/internal/events")
        def receive():
            body = request.get_data()
            from shared.settings import DEV_SECRETS

            problem = signing.verify(os.environ.get("EVENT_SECRET", DEV_SECRETS["EVENT_SECRET"]), request.headers, body)
            if problem:
                return {"message": problem}, 401
            self.received.append(json.loads(body))
            return {"result": "applied"}

        return app

    def start(self) -> EventConsumer:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", self.port, self._app(), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.received if e["type"] == event_type]


@pytest.fixture(scope="session")
def migrated():
    """Each service's schema, built by its own Alembic migrations from nothing."""
    from sqlalchemy import text

    from services import SERVICES, settings_for
    from shared.db import Database
    from shared.migrate import upgrade

    for service in SERVICES:
        settings = settings_for(service.name)
        if settings.on_postgres:
            database = Database(settings)
            with database.engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
            database.engine.dispose()
        upgrade(service, settings)
    return True


@pytest.fixture
def consumer(pytestconfig) -> Iterator[EventConsumer]:
    consumer = pytestconfig._event_consumer
    consumer.received.clear()
    if consumer.server is None:
        consumer.start()
    yield consumer
    if consumer.server is None:
        consumer.start()


@pytest.fixture
def redis_conn():
    from shared.queue import redis_connection

    connection = redis_connection(os.environ["REDIS_URL"])
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def clean_db(migrated):
    """Every table of the service emptied before the test."""
    from services import SERVICES, settings_for
    from shared.db import Database

    for service in SERVICES:
        database = Database(settings_for(service.name))
        _empty_tables(database, service)
        database.engine.dispose()


@pytest.fixture
def app(clean_db, redis_conn, consumer):
    from services.dissemination import create_app
    from shared.service import set_runtime

    application = create_app({"settings": {"testing": True}})
    database = application.extensions["database"]
    set_runtime("dissemination", None)
    with application.app_context():
        from services.dissemination.directory import seed_directory
        from shared.db import get_session

        seed_directory(get_session(), application.extensions["settings"])
    _clear_mail()
    consumer.received.clear()
    yield application
    database.engine.dispose()


def _empty_tables(database, service) -> None:
    from sqlalchemy import text

    tables = [t.name for t in reversed(service.metadata.sorted_tables)]
    with database.engine.begin() as connection:
        if database.settings.on_postgres:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f'DELETE FROM "{table}"'))


def _clear_mail() -> None:
    for path in (_TMP / "mail").glob("*.eml"):
        path.unlink()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def outcomes_app(app):
    """The outcomes service, beside the dissemination service (``app``), on empty tables."""
    from services.outcomes import create_app
    from shared.service import set_runtime

    application = create_app({"settings": {"testing": True}})
    set_runtime("outcomes", None)
    yield application
    application.extensions["database"].engine.dispose()


@pytest.fixture
def outcomes_client(outcomes_app):
    return outcomes_app.test_client()


@pytest.fixture
def metrics_app(app):
    """The metrics service, on an empty read model."""
    from services.metrics import create_app
    from shared.service import set_runtime

    application = create_app({"settings": {"testing": True}})
    set_runtime("metrics", None)
    yield application
    application.extensions["database"].engine.dispose()


@pytest.fixture
def metrics_client(metrics_app):
    return metrics_app.test_client()


@pytest.fixture
def pump_events(app, outcomes_app):
    """Carry every event the dissemination service has emitted so far to the outcomes service's
    /internal/events, signed, as the relay does (each once; the inbox ignores repeats)."""
    from sqlalchemy import select

    from shared import signing

    delivered: set = set()

    def pump(source=app, target=outcomes_app) -> int:
        models = source.extensions["service"].models
        session = source.extensions["database"].session()
        route = (source.extensions["service"].name, target.extensions["service"].name)
        try:
            events = session.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.position)).all()
            messages = [e.as_message(route[0]) for e in events if (route, e.id) not in delivered]
            delivered.update((route, e.id) for e in events)
        finally:
            session.close()
        client = target.test_client()
        secret = target.extensions["settings"].event_secret
        for message in messages:
            body = json.dumps(message).encode()
            response = client.post("/internal/events", data=body, headers=signing.signed_headers(secret, body))
            assert response.status_code == 200, response.get_json()
        return len(messages)

    pump.delivered = delivered  # type: ignore[attr-defined]  # kept and given back by snapshot_world
    return pump


@pytest.fixture
def snapshot_world(request, app, outcomes_app, metrics_app, redis_conn, consumer, pump_events):
    """``snapshot_world(build)``: what ``build`` returns (its arguments are the fixtures of the
    same names), on the world it made: built by the first test in this process that asks, then
    restored, rows, Redis, mail and events, for each test after (tests/snapshot.py says why)."""
    from tests import snapshot

    return lambda build: snapshot.world(build, request, redis_conn, consumer, pump_events, _TMP / "mail")


@pytest.fixture
def on_postgres(app):
    """For a test of what only PostgreSQL has (its connections to cut, libpq's trace): skipped
    on the embedded defaults."""
    if not app.extensions["settings"].on_postgres:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")


@pytest.fixture
def session(app):
    db_session = app.extensions["database"].session()
    yield db_session
    db_session.close()


@pytest.fixture
def token(app):
    from shared.auth import mint_token

    def make(org: str = "NCLCC", roles: str = "issuer", clearance: str = "OFFICIAL-SENSITIVE", sub: str = "") -> dict:
        role_list = roles.split(",")
        value = mint_token(
            app.extensions["settings"],
            sub=sub or f"{role_list[0]}@{org.lower()}",
            org=org,
            roles=role_list,
            clearance=clearance,
        )
        return {"Authorization": f"Bearer {value}"}

    return make


@pytest.fixture
def run_jobs(redis_conn):
    """Run every queued job in this process until the queues are empty (retries included), as
    the worker runs them (``shared.worker``: each under the request id it was enqueued with)."""
    from rq import SimpleWorker

    from shared.queue import TracedJob

    def run(*queues: str) -> None:
        worker = SimpleWorker([*(queues or ("dissemination",)), "events"], connection=redis_conn, job_class=TracedJob)
        worker.work(burst=True, with_scheduler=False, max_jobs=500)

    return run


@pytest.fixture
def live_worker(redis_conn):
    """A worker in RQ's registry with a fresh heartbeat on every service's queue and the events
    queue, as ``python -m services worker`` registers itself, so ``/readyz`` finds one. It takes
    no job: tests run jobs with ``run_jobs``."""
    from rq import SimpleWorker

    from services import SERVICES
    from shared.outbox import EVENTS_QUEUE

    worker = SimpleWorker([*(service.name for service in SERVICES), EVENTS_QUEUE], connection=redis_conn)
    worker.register_birth()
    yield worker
    worker.register_death()


PUBLIC_TEST_ADDRESS = "93.184.216.34"  # a public address; nothing connects to it in these tests


class Resolver(dict):
    """Test DNS: names under ``.example`` resolve to what the test says (a public address
    unless told otherwise; None: no such name); every other name resolves as usual."""

    def lookup(self, host: str) -> list[str] | None:
        value = self.get(host, PUBLIC_TEST_ADDRESS)
        if callable(value):
            value = value()
        return None if value is None else [value] if isinstance(value, str) else list(value)


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> Resolver:
    """Webhook hosts in tests (``*.example``) resolve by this table, so no test depends on real
    DNS and a test can make a name resolve to anything, or change between two lookups."""
    import ipaddress
    import socket

    table = Resolver()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").lower().endswith(".example"):
            addresses = table.lookup(name.rstrip(".").lower())
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            result = []
            for address in addresses:
                if ipaddress.ip_address(address).version == 6:
                    result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0)))
                else:
                    result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0)))
            return result
        return real_getaddrinfo(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture
def mailbox():
    from shared.notify import read_sink

    return lambda: read_sink(_TMP / "mail")


@pytest.fixture
def log_lines():
    """What this process logs from now on, rendered as the services render it (one JSON object
    per line, DEBUG and up); ``log_lines()`` parses each line."""
    import logging

    from shared.logs import formatter

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    keep = Keep(logging.DEBUG)
    keep.setFormatter(formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)

    def parsed() -> list[dict]:
        assert all("\n" not in line for line in lines), "one JSON object per line"
        return [json.loads(line) for line in lines]

    parsed.raw = lines  # type: ignore[attr-defined]
    yield parsed
    root.removeHandler(keep)
    root.setLevel(level)
