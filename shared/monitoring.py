"""Prometheus metrics: what each process counts, what each service's ``/metrics`` reports, and the
endpoints of the worker and cron processes. Every name starts with ``ofs_`` (README, Monitoring
and alerts, lists them and the alerts built on them).

Counters and histograms live in ``prometheus_client``'s registry. Under gunicorn each worker
process writes them to ``PROMETHEUS_MULTIPROC_DIR`` (``shared.gunicorn_conf`` sets it up) and a
scrape adds every process's files up; without that variable (tests, ``flask run``) the one
process's registry is read. The state of the service (outbox backlog, queues, live workers, the
last sweep, and gauges a service adds, like the outcomes service's overdue returns) is read from
its database and Redis at scrape time by ``ServiceState``, so it is right whichever process
answers.

``/metrics`` answers only to ``Authorization: Bearer <METRICS_SCRAPE_TOKEN>`` (compared in
constant time); a refused scrape is a 401 in the usual error shape and goes to the audit log. A
successful one does not: Prometheus scrapes every 15 s, which would bury the audit log's real
entries (and the scrape reads no record of anyone). The worker and the cron process, which have
no web server, serve their counters on their own port (``WORKER_METRICS_PORT``,
``CRON_METRICS_PORT``; loopback unless ``PROCESS_METRICS_ADDRESS`` says otherwise; 0 turns one
off), behind the same token.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask, Response, current_app, g, request
from flask_smorest import abort
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import BaseWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.audit import audit_detail, skip_audit
from shared.auth import current_principal
from shared.db import Database, utcnow
from shared.health import worker_is_live
from shared.logs import get_logger
from shared.models import SharedModels
from shared.queue import redis_connection
from shared.settings import Settings

log = get_logger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The Redis key the outbox sweep writes its end time to (unix seconds), one per service.
SWEEP_KEY = "health:sweep:{service}"
# Any other method an attacker invents is counted as "other", so it cannot mint label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "ofs_http_requests",
    "HTTP requests answered, by route pattern (never the raw path) and status.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "ofs_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern.",
    ["service", "method", "route"],
)
EVENTS_RELAYED = Counter(
    "ofs_events_relayed",
    "Event deliveries tried by the relay: delivered, pending (to be retried) or dead (no try left).",
    ["service", "subscriber", "result"],
)
NOTIFICATION_FAILURES = Counter(
    "ofs_notification_failures",
    "Notifications (webhook or e-mail) that failed on one contact; the next try or contact may still succeed.",
    ["service", "channel"],
)

ServiceGauge = Callable[[Session], float]


def init_app(app: Flask, settings: Settings, database: Database, models: SharedModels, queues: Sequence[str]) -> None:
    """Count every request, and serve ``/metrics``."""
    app.extensions["monitoring"] = ServiceState(settings, database, models, queues)

    def start_timer() -> None:
        g.monitoring_started = time.perf_counter()

    def count_request(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else _UNMATCHED_ROUTE
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(settings.service, method, route, str(response.status_code)).inc()
        started = g.get("monitoring_started")
        if started is not None:
            HTTP_REQUEST_DURATION.labels(settings.service, method, route).observe(time.perf_counter() - started)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request(count_request)
    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def add_gauge(app: Flask, name: str, documentation: str, compute: ServiceGauge) -> None:
    """A gauge of this service's own, computed from its database at every scrape."""
    app.extensions["monitoring"].gauges.append((name, documentation, compute))


def _metrics_view():
    settings: Settings = current_app.extensions["settings"]
    if not scrape_token_matches(settings, request.headers.get("Authorization")):
        current_principal()  # a person's token sent here names them in the audit log
        audit_detail("metrics scrape refused: no scrape token or a wrong one")
        abort(401, message="Metrics need the scrape token: Authorization: Bearer <METRICS_SCRAPE_TOKEN>.")
    skip_audit()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    scrape = _Scrape(process_collector(), current_app.extensions["monitoring"])
    return Response(encoder(scrape), content_type=content_type)


def scrape_token_matches(settings: Settings, authorization: str | None) -> bool:
    expected = settings.metrics_scrape_token
    scheme, _, given = (authorization or "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def process_collector() -> Collector:
    """The counters of this process, or of every process of this gunicorn when multiprocess."""
    path = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return registry
    return REGISTRY


class _Scrape:
    def __init__(self, *collectors: Collector):
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class ServiceState(Collector):
    """The service's backlog and its dependencies' state, read at each scrape."""

    def __init__(self, settings: Settings, database: Database, models: SharedModels, queues: Sequence[str]):
        self.settings = settings
        self.database = database
        self.models = models
        self.queues = tuple(queues)
        self.gauges: list[tuple[str, str, ServiceGauge]] = []

    def collect(self) -> Iterator[Metric]:
        service = self.settings.service
        up = GaugeMetricFamily(
            "ofs_scrape_source_up",
            "Whether this scrape could read the source (1) or not (0): its figures are missing when not.",
            labels=["service", "source"],
        )
        for source, read in (("database", self._from_database), ("redis", self._from_redis)):
            try:
                yield from list(read())
                up.add_metric([service, source], 1)
            except Exception as error:  # noqa: BLE001 - a scrape says what it could not read
                log.warning("metrics source unavailable", source=source, error=f"{type(error).__name__}: {error}")
                up.add_metric([service, source], 0)
        yield up

    def _from_database(self) -> Iterable[Metric]:
        service = self.settings.service
        delivery, event = self.models.OutboxDelivery, self.models.OutboxEvent
        with self.database.session() as session:
            counts = session.execute(
                select(delivery.subscriber, delivery.status, func.count())
                .where(delivery.status.in_(("pending", "dead")))
                .group_by(delivery.subscriber, delivery.status)
            ).all()
            oldest = session.execute(
                select(delivery.subscriber, func.min(event.occurred_at))
                .join(event, delivery.event_id == event.id)
                .where(delivery.status == "pending")
                .group_by(delivery.subscriber)
            ).all()
            own = [(name, documentation, compute(session)) for name, documentation, compute in self.gauges]
        subscribers = sorted({*self.settings.subscribers, *(row[0] for row in counts)})
        by_status = {(subscriber, status): number for subscriber, status, number in counts}
        deliveries = GaugeMetricFamily(
            "ofs_outbox_deliveries",
            "Outbox deliveries waiting (pending) or given up (dead, until an admin redelivers), by subscriber.",
            labels=["service", "subscriber", "status"],
        )
        for subscriber in subscribers:
            for status in ("pending", "dead"):
                deliveries.add_metric([service, subscriber, status], by_status.get((subscriber, status), 0))
        yield deliveries
        now = utcnow()
        oldest_by_subscriber = {subscriber: occurred_at for subscriber, occurred_at in oldest}
        age = GaugeMetricFamily(
            "ofs_outbox_oldest_pending_age_seconds",
            "Age of the oldest event still pending for a subscriber (0 when none is).",
            labels=["service", "subscriber"],
        )
        for subscriber in subscribers:
            occurred_at = oldest_by_subscriber.get(subscriber)
            seconds = (now - _aware(occurred_at)).total_seconds() if occurred_at is not None else 0.0
            age.add_metric([service, subscriber], max(0.0, seconds))
        yield age
        for name, documentation, value in own:
            yield GaugeMetricFamily(name, documentation, value=value)

    def _from_redis(self) -> Iterable[Metric]:
        service = self.settings.service
        connection = redis_connection(self.settings.redis_url)
        jobs = GaugeMetricFamily(
            "ofs_queue_jobs",
            "RQ jobs by queue and state: queued (waiting for a worker), scheduled (a retry or a delay), "
            "started (running) and failed (kept for a week).",
            labels=["queue", "state"],
        )
        for name in self.queues:
            queue = Queue(name, connection=connection)
            jobs.add_metric([name, "queued"], queue.count)
            for state, registry_class in (
                ("scheduled", ScheduledJobRegistry),
                ("started", StartedJobRegistry),
                ("failed", FailedJobRegistry),
            ):
                # No clean-up from a scrape: it only reads.
                jobs.add_metric([name, state], registry_class(queue=queue).get_job_count(cleanup=False))
        yield jobs
        live = GaugeMetricFamily(
            "ofs_rq_workers_live",
            "RQ workers listening to the queue that are live (heartbeat under WORKER_TTL, process there).",
            labels=["queue"],
        )
        workers = live_workers(connection)
        for name in self.queues:
            live.add_metric([name], sum(1 for worker in workers if name in worker.queue_names()))
        yield live
        sweep = connection.get(SWEEP_KEY.format(service=service))
        if sweep is not None:
            last_sweep = GaugeMetricFamily(
                "ofs_last_sweep_timestamp_seconds",
                "When the cron process last finished this service's outbox sweep (unix seconds).",
                labels=["service"],
            )
            last_sweep.add_metric([service], float(sweep))
            yield last_sweep
        interval = GaugeMetricFamily(
            "ofs_sweep_interval_seconds",
            "How often the outbox sweep is meant to run (OUTBOX_SWEEP_SECONDS).",
            labels=["service"],
        )
        interval.add_metric([service], self.settings.outbox_sweep_seconds)
        yield interval


def live_workers(connection) -> list[BaseWorker]:
    """RQ's registered workers that are live by readiness's own test (``shared.health``), so the
    "no live worker" alert and /readyz never disagree."""
    now = datetime.now(UTC)
    return [worker for worker in Worker.all(connection=connection) if worker_is_live(worker, now)]


def _aware(moment: datetime) -> datetime:
    """SQLite and RQ may hand back naive UTC times."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- the worker's and the cron process's own endpoint -----------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the standard library's name
        pass  # a scrape every 15 s is not news


def start_process_endpoint(process_name: str, settings: Settings, port: int) -> ThreadingWSGIServer | None:
    """Serve this process's counters on ``port`` (0: not at all) behind the scrape token, in a
    thread. A port already taken is logged and left: metrics never stop the work."""
    if port == 0:
        return None
    serve_metrics = make_wsgi_app(process_collector())

    def guarded(environ, start_response):
        if not scrape_token_matches(settings, environ.get("HTTP_AUTHORIZATION")):
            log.warning("metrics scrape refused", process=process_name, remote_addr=environ.get("REMOTE_ADDR"))
            start_response("401 UNAUTHORIZED", [("Content-Type", "application/json")])
            return [
                b'{"code": 401, "status": "Unauthorized", "message": "Metrics need the scrape token: '
                b'Authorization: Bearer <METRICS_SCRAPE_TOKEN>."}'
            ]
        return serve_metrics(environ, start_response)

    address = settings.process_metrics_address
    try:
        server = make_server(address, port, guarded, ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as error:
        log.warning("metrics endpoint not started", address=address, port=port, error=str(error))
        return None
    threading.Thread(target=server.serve_forever, name=f"{process_name}-metrics", daemon=True).start()
    log.info("metrics endpoint listening", address=address, port=server.server_port)
    return server
