"""The whole system as ``make run`` starts it, on a drill database and the drills' own Redis.

``System.start`` derives the drill database from ``DATABASE_URL`` (``<db>_drill``, dropped and
made again, so every count starts at zero; ``DRILL_DATABASE_URL`` names one outright), or uses
SQLite files in the run directory when there is no ``DATABASE_URL``. It starts a redis-server
of its own, then ``python -m tools.run`` with its own ``RUN_DIR``, ports and a seconds-scale
chase ladder, mints tokens with ``tools.token`` as a user would, gives two forces a webhook on
a loopback receiver and waits until the directory's seeding events have gone through.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from drills.processes import Control, control_for
from drills.receiver import WebhookReceiver, wait_until
from drills.redis_server import RedisServer
from shared.devredis import free_port
from shared.settings import ROOT

SERVICES = ("dissemination", "outcomes", "metrics")
# Forces the load issues to: two take notifications by webhook, two by e-mail.
WEBHOOK_FORCES = ("GMP", "WYP")
EMAIL_FORCES = ("MPS", "WMP")
FORCES = WEBHOOK_FORCES + EMAIL_FORCES
CENTRE = "NCLCC"
# The chase ladder, in seconds around each return's due date (due 14 s after issue).
LADDER = (
    {"name": "reminder", "offset_seconds": -7, "notify": "recipient"},
    {"name": "due_today", "offset_seconds": 0, "notify": "recipient"},
    {"name": "overdue", "offset_seconds": 3, "notify": "recipient"},
    {"name": "escalation", "offset_seconds": 6, "notify": "escalation"},
    {"name": "centre_escalation", "offset_seconds": 9, "notify": "centre"},
)
DUE_AFTER_SECONDS = 14
# How the processes are tuned for the drills: sweeps every second or two, notifications retried
# within seconds. The relay keeps its production ladder (5 s, 15 s, 60 s, ...), so a consumer
# that catches up sooner than 60 s after it is back did so because it was noticed.
DRILL_SETTINGS = {
    "CHASE_SWEEP_SECONDS": "1",
    "OUTBOX_SWEEP_SECONDS": "5",
    "NOTIFY_SWEEP_SECONDS": "5",
    "MIN_DUE_SECONDS": "5",
    "NOTIFY_RETRY_INTERVALS": "2,4,8,16,30",
}


# Bounds for what takes seconds on an idle machine and minutes on one crowded with other work;
# they are there to stop a system that never heals, not to time it.
STARTS_WITHIN = 300.0


class Unavailable(RuntimeError):
    """A request failed on every try within its time bound."""


def drill_database_url() -> str | None:
    """The drill database's URL: DRILL_DATABASE_URL, else DATABASE_URL's database + '_drill'."""
    if os.environ.get("DRILL_DATABASE_URL"):
        return os.environ["DRILL_DATABASE_URL"]
    base = os.environ.get("DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        return None
    url = make_url(base)
    return url.set(database=f"{url.database}_drill").render_as_string(hide_password=False)


def recreate_database(url: str) -> None:
    """Drop the drill database and make it again: no tables, no counts from an earlier run."""
    target = make_url(url)
    maintenance = target.set(drivername="postgresql+psycopg", database="postgres")
    admin = create_engine(maintenance, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


class Store:
    """Reads the three services' tables directly, for counts the APIs do not give."""

    def __init__(self, database_url: str | None, var_dir: Path):
        self.on_postgres = database_url is not None
        if database_url:
            engine = create_engine(_psycopg(database_url), poolclass=NullPool)
            self.engines = dict.fromkeys(SERVICES, engine)
            self.database = make_url(database_url).database
        else:
            self.engines = {
                name: create_engine(f"sqlite:///{var_dir / (name + '.db')}", poolclass=NullPool) for name in SERVICES
            }
            self.database = None

    def table(self, service: str, name: str) -> str:
        return f'"{service}"."{name}"' if self.on_postgres else f'"{name}"'

    def rows(self, service: str, sql: str, **params: Any) -> list[Any]:
        """``sql`` with ``{table_name}`` placeholders for the service's tables."""
        names = {
            n: self.table(service, n)
            for n in (
                "outbox_events",
                "outbox_deliveries",
                "inbox_events",
                "chase_log",
                "expected_returns",
                "outcome_returns",
                "disseminations",
                "returns",
                "packages",
            )
        }
        with self.engines[service].connect() as connection:
            return list(connection.execute(text(sql.format(**names)), params))

    def scalar(self, service: str, sql: str, **params: Any) -> Any:
        rows = self.rows(service, sql, **params)
        return rows[0][0] if rows else None

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` on every other connection to the drill database."""
        assert self.on_postgres
        engine = self.engines["dissemination"]
        with engine.connect() as connection:
            killed = connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": self.database},
            ).scalar()
        return int(killed or 0)

    def dispose(self) -> None:
        for engine in set(self.engines.values()):
            engine.dispose()


def _psycopg(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


class Api:
    """HTTP calls to the three services, retried within a time bound on a connection error or a
    5xx answer. A POST is only retried with an Idempotency-Key, so a retry never files twice."""

    def __init__(self, urls: dict[str, str]):
        self.urls = urls
        self.http = requests.Session()
        self.retries = 0
        self.errors: list[str] = []
        # No retrying once make run has exited: nothing will answer.
        self.alive: Callable[[], bool] = lambda: True

    def call(
        self,
        method: str,
        service: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        idempotency_key: str | None = None,
        within: float = 30.0,
        ok: tuple[int, ...] = (200, 201),
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retriable = method == "GET" or idempotency_key is not None
        deadline = time.monotonic() + within
        wait = 0.2
        last = ""
        while True:
            try:
                response = self.http.request(method, self.urls[service] + path, json=json, headers=headers, timeout=10)
                if response.status_code in ok:
                    return response
                last = f"{method} {path}: HTTP {response.status_code} {response.text[:200]}"
                if response.status_code < 500:
                    raise AssertionError(last)
            except requests.RequestException as error:
                last = f"{method} {path}: {type(error).__name__}"
            self.errors.append(last)
            if not self.alive():
                raise Unavailable(f"{last} (make run has exited)")
            if not retriable or time.monotonic() + wait > deadline:
                raise Unavailable(last)
            self.retries += 1
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


class System:
    """``settings`` tune the processes (the drills' by default); ``ladder`` is the chase policy
    set once the system is up (None keeps the services' own); ``database_url`` overrides the
    drill database (``make bench`` runs on a database of its own)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        settings: dict[str, str] | None = None,
        ladder: tuple[dict, ...] | None = LADDER,
        database_url: str | None = None,
    ):
        self.run_dir = run_dir
        self.database_url = database_url or drill_database_url()
        self.settings = DRILL_SETTINGS if settings is None else settings
        self.ladder = ladder
        self.marker = uuid.uuid4().hex
        self.redis = RedisServer(run_dir / "redis")
        self.receiver = WebhookReceiver()
        self.process: subprocess.Popen | None = None
        self.control: Control
        self.tokens: dict[str, str] = {}
        self.started_at = 0.0
        ports = {name: free_port() for name in SERVICES}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        self.env = self._environment(ports)
        self.store = Store(self.database_url, run_dir / "var")
        self.api = Api(self.urls)
        self.api.alive = self.alive
        self.log_path = run_dir / "run.log"

    def _environment(self, ports: dict[str, int]) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.endswith(("_DATABASE_URL", "_DATABASE_SCHEMA", "_SUBSCRIBERS", "_URL", "_PORT"))
            and key not in ("DATABASE_URL", "REDIS_URL", "VAR_DIR", "MAIL_SINK_DIR")
        }
        env.update(self.settings)
        env.update(
            RUN_DIR=str(self.run_dir),
            VAR_DIR=str(self.run_dir / "var"),
            MAIL_SINK_DIR=str(self.run_dir / "mail"),
            REDIS_URL=self.redis.url,
            APP_ENV="development",
            WEBHOOK_ALLOW_PRIVATE="true",
            PYTHONUNBUFFERED="1",
            DRILL_RUN_ID=self.marker,
        )
        for name, port in ports.items():
            env[f"{name.upper()}_PORT"] = str(port)
            env[f"{name.upper()}_URL"] = self.urls[name]
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        return env

    # --- starting and stopping ---------------------------------------------------------------

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.database_url:
            recreate_database(self.database_url)
        self.redis.start()
        self.log = open(self.log_path, "w+")  # noqa: SIM115 - open for the life of the run
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.run"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until(self._ready, timeout=STARTS_WITHIN, every=0.5):
            raise AssertionError(f"the system was not ready within {STARTS_WITHIN:.0f} s:\n{self.log_tail()}")
        self.control = control_for(self.run_dir, self.process.pid, self.env)
        self._mint_tokens()
        self._set_webhooks()
        if self.ladder is not None:
            self.api.call(
                "PUT", "outcomes", "/api/v1/chase-policy", self.tokens["issuer"], json={"steps": list(self.ladder)}
            )
        if not wait_until(lambda: self.outbox_backlog() == (0, 0), timeout=STARTS_WITHIN, every=0.5):
            backlog = self.outbox_backlog()
            raise AssertionError(f"the directory's events not delivered within {STARTS_WITHIN:.0f} s: {backlog}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"make run exited with {self.process.returncode}:\n{self.log_tail()}")
        return all(self.readyz(name) == 200 for name in SERVICES)

    def readyz(self, service: str) -> int | None:
        try:
            return requests.get(self.urls[service] + "/readyz", timeout=3).status_code
        except requests.RequestException:
            return None

    def _mint_tokens(self) -> None:
        wanted = {"issuer": (CENTRE, "issuer,admin"), "leader": (CENTRE, "leader")}
        wanted.update({force: (force, "recipient") for force in FORCES})
        running = {
            key: subprocess.Popen(
                [sys.executable, "-m", "tools.token", "--org", org, "--role", role],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for key, (org, role) in wanted.items()
        }
        for key, process in running.items():
            out, _ = process.communicate(timeout=180)  # a loaded machine imports slowly
            self.tokens[key] = out.strip()

    def _set_webhooks(self) -> None:
        for force in WEBHOOK_FORCES:
            answer = self.api.call(
                "PATCH",
                "dissemination",
                f"/api/v1/organisations/{force}",
                self.tokens["issuer"],
                json={"webhook_url": self.receiver.url_for(force)},
            )
            self.receiver.secrets[force] = answer.json()["webhook_secret"]

    def stop(self) -> int | None:
        """Ctrl-C to ``make run``, as a user would; the process group is killed if it hangs."""
        code = None
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                code = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.redis.stop()
        self.receiver.stop()
        self.store.dispose()
        return code

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- what the drills read ----------------------------------------------------------------

    def outbox_backlog(self) -> tuple[int, int]:
        """(pending, dead) deliveries over the three services' outboxes."""
        pending = dead = 0
        for service in SERVICES:
            for status, count in self.store.rows(
                service, "SELECT status, count(*) FROM {outbox_deliveries} GROUP BY status"
            ):
                pending += count if status == "pending" else 0
                dead += count if status == "dead" else 0
        return pending, dead

    def mail(self) -> list[Any]:
        from shared.notify import read_sink

        return read_sink(self.run_dir / "mail")

    def now(self) -> datetime:
        from datetime import UTC

        return datetime.now(UTC)


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started


class QueueWatch:
    """Samples the RQ queues' depths once a second while a drill runs (bounded by ``stop``):
    the backlog the fault built up, for the figures."""

    QUEUES = ("dissemination", "outcomes", "metrics", "events")

    def __init__(self, system: System, limit_seconds: float = 600.0):
        import threading

        self.system = system
        self.deepest: dict[str, int] = dict.fromkeys(self.QUEUES, 0)
        self.limit = limit_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import redis

        client = redis.Redis.from_url(self.system.redis.url, socket_connect_timeout=1, socket_timeout=2)
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with client.pipeline(transaction=False) as pipeline:
                    for name in self.QUEUES:
                        pipeline.llen(f"rq:queue:{name}")
                    depths = pipeline.execute()
            except redis.RedisError:
                depths = []  # stopped by the drill: nothing to sample
            for name, depth in zip(self.QUEUES, depths, strict=False):
                self.deepest[name] = max(self.deepest[name], int(depth))
            self._stop.wait(1.0)
        client.close()

    def figure(self) -> tuple[str, str]:
        return ("deepest queues (jobs waiting)", ", ".join(f"{name} {n}" for name, n in self.deepest.items()))
