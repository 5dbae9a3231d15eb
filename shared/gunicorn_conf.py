"""gunicorn's settings for every service: ``gunicorn --config python:shared.gunicorn_conf ...``
(Procfile, Dockerfile, docker-compose.yml). The command line adds the bind address, workers and
the app.

Logs: gunicorn's own lines and its access log go through the services' renderer
(``shared.logs``): one JSON object per line, the access line carrying the request id the app
returned. A form link's path is written as ``/form/<token>``: the token in it is a credential
(see ``shared.redact``). Successful health checks, scrapes and event deliveries are logged at
DEBUG: they come every few seconds, and the consumer logs each event it applies.

Metrics: gunicorn's workers are separate processes, so ``prometheus_client`` runs in
multiprocess mode: each worker writes its counters under ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape adds them up. The directory is emptied when the master starts (counters from a previous
run would otherwise be added in) and a dead worker's live gauges are dropped when it exits.
Without the variable the master makes a directory of its own and removes it when it stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import structlog
from gunicorn.glogging import Logger

from shared.logs import REQUEST_ID_HEADER, configure_logging, formatter, sane_request_id
from shared.procs import die_with_parent, exit_now
from shared.redact import mask_form_tokens, masked

accesslog = "-"
logger_class = "shared.gunicorn_conf.MaskingLogger"
# Threads in each worker (WEB_THREADS, default 4; 1 is gunicorn's sync worker). A request spends
# about a third of its time waiting on PostgreSQL (py-spy under `make bench`): with one request
# per process the cores sat idle meanwhile (1.4 of 2 busy), and a worker process more per
# service costs a whole interpreter and a pool of connections. 4 threads kept the cores busy and
# the event lag low; 8 queued the subscribers' batches behind the web requests
# (docs/performance.md, sixth round). Each thread takes its own connection from the process's
# pool (5, SQLAlchemy's default), and keeps a client's connection open between its requests.
# What changes with threads: gunicorn's --timeout no longer stops a request that hangs (the
# worker's main loop still answers the master). Every outbound HTTP, SMTP and Redis call has a
# timeout of its own, and a database connection that goes silent is found dead within a minute
# by TCP keepalives (shared.db.TCP_KEEPALIVES), where a sync worker was killed at --timeout.
threads = int(os.environ.get("WEB_THREADS") or 4)
worker_class = "gthread" if threads > 1 else "sync"
# gunicorn >= 25.1 opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl):
# the three services (and a second `make run`) would fight over it. supervisorctl, or compose,
# is the control interface.
control_socket_disable = True


def post_fork(server, worker):
    """A worker stops when its master dies, even by SIGKILL: left alone it would keep serving
    the old master's socket (and block the restarted master's bind) until it noticed, up to
    --timeout seconds later."""
    die_with_parent()


def worker_exit(server, worker):
    """A worker that has stopped serving ends at once, with the exit code gunicorn gave it (its
    master reads it), not after seconds of interpreter teardown (``shared.procs.exit_now``)."""
    error = sys.exc_info()[1]
    code = error.code if isinstance(error, SystemExit) else 1
    exit_now(code if isinstance(code, int) else (0 if code is None else 1))


MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Answered often and logged elsewhere when it matters: at DEBUG when they succeed.
QUIET_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/internal/events")}

_made_multiproc_dir: list[str] = []


def on_starting(server) -> None:
    """Before any worker is forked (and imports prometheus_client): the multiprocess directory."""
    path = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not path:
        path = tempfile.mkdtemp(prefix="ofs-prometheus-")
        _made_multiproc_dir.append(path)
        os.environ[MULTIPROC_DIR_VARIABLE] = path
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server, worker) -> None:
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    for path in _made_multiproc_dir:
        shutil.rmtree(path, ignore_errors=True)


def process_name(cfg) -> str:
    """The service a gunicorn serves, from its app (the last part of its module, e.g. ``outcomes``)."""
    app_uri = str(getattr(cfg, "proc_name", None) or "gunicorn")
    return app_uri.split(":", 1)[0].rsplit(".", 1)[-1] or "gunicorn"


class MaskingLogger(Logger):
    """gunicorn's logger, through the services' renderer, with form tokens masked in the
    access log's fields and atoms (request line, path, query, Referer, headers, environ) and in
    the error log's messages."""

    def setup(self, cfg):
        super().setup(cfg)
        configure_logging(process_name(cfg))
        # Made once, after the configuration: a logger made per line cost a tenth of the line.
        self._access_lines = structlog.get_logger("gunicorn.access")
        self.access_log.setLevel(logging.NOTSET)  # LOG_LEVEL decides, as for every logger
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                if not getattr(handler, "_gunicorn", False):
                    continue
                if isinstance(handler, logging.FileHandler):  # --access-logfile / --error-logfile
                    handler.setFormatter(formatter())
                else:  # "-": to the one renderer on the root logger
                    log.removeHandler(handler)
                    log.propagate = True

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        method = str(environ.get("REQUEST_METHOD", "-"))
        status = str(resp.status).split(None, 1)[0]
        quiet = (method, environ.get("PATH_INFO")) in QUIET_ROUTES and status.startswith(("2", "3"))
        self._access_lines.log(
            logging.DEBUG if quiet else logging.INFO,
            "request",
            method=method,
            path=masked(environ.get("RAW_URI") or environ.get("PATH_INFO", "")),
            status=int(status) if status.isdigit() else status,
            duration_s=round(request_time.total_seconds(), 6),
            bytes=getattr(resp, "sent", None),
            remote_addr=environ.get("REMOTE_ADDR"),
            referer=masked(environ.get("HTTP_REFERER")),
            user_agent=masked(environ.get("HTTP_USER_AGENT")),
            request_id=_response_header(resp, REQUEST_ID_HEADER) or sane_request_id(environ.get("HTTP_X_REQUEST_ID")),
        )

    def atoms(self, resp, req, environ, request_time):
        return {name: masked(value) for name, value in super().atoms(resp, req, environ, request_time).items()}

    def _masked_log(self, method, msg, *args, **kwargs):
        method(mask_form_tokens(str(msg)), *(masked(arg) for arg in args), **kwargs)

    def critical(self, msg, *args, **kwargs):
        self._masked_log(super().critical, msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs):
        self._masked_log(super().error, msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs):
        self._masked_log(super().warning, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs):
        self._masked_log(super().info, msg, *args, **kwargs)

    def debug(self, msg, *args, **kwargs):
        self._masked_log(super().debug, msg, *args, **kwargs)

    def exception(self, msg, *args, **kwargs):
        self._masked_log(super().exception, msg, *args, **kwargs)


def _response_header(resp, name: str) -> str | None:
    headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
    return next((value for key, value in headers if key.lower() == name.lower()), None)
