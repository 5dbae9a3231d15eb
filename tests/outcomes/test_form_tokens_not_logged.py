"""A form link's token is a bearer credential for 120 days: it never reaches the audit log (even
for a path that matches no route) nor gunicorn's access log (as the services run it: Procfile,
Dockerfile and docker-compose.yml all use ``shared.gunicorn_conf``)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from shared.form_links import form_token
from shared.settings import ROOT
from tests.outcomes.helpers import issued_returns


@pytest.fixture
def link_token(client, token, pump_events, outcomes_app) -> str:
    return_id = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    return form_token(outcomes_app.extensions["settings"], return_id)


def audit_text(outcomes_app) -> list[tuple[str, str, str]]:
    model = outcomes_app.extensions["service"].models.AuditEntry
    session = outcomes_app.extensions["database"].session()
    try:
        return [(r.path, r.action, str(r.detail)) for r in session.scalars(select(model).order_by(model.id))]
    finally:
        session.close()


def test_form_urls_that_match_no_route_are_audited_by_a_placeholder(outcomes_app, outcomes_client, link_token):
    assert outcomes_client.get(f"/form/{link_token}/whatever").status_code == 404
    assert outcomes_client.get(f"/form/{link_token}/done/extra?x=1").status_code == 404
    assert outcomes_client.put(f"/form/{link_token}").status_code == 405
    assert outcomes_client.get(f"/form/{link_token}").status_code == 200
    rows = audit_text(outcomes_app)
    assert [path for path, _, _ in rows] == [
        "/form/<unmatched>",
        "/form/<unmatched>",
        "/form/<unmatched>",
        "/form/<token>",
    ]
    assert [action for _, action, _ in rows] == [
        "GET /form/<unmatched>",
        "GET /form/<unmatched>",
        "PUT /form/<unmatched>",
        "GET /form/<token>",
    ]
    assert not [row for row in rows if link_token in " ".join(row) or link_token[:20] in " ".join(row)]


def gunicorn_logger():
    """The access logger gunicorn builds from the services' configuration module."""
    from gunicorn.config import Config

    import shared.gunicorn_conf as conf

    config = Config()
    for name in ("accesslog", "logger_class"):
        config.set(name, getattr(conf, name))
    return config.logger_class(config)


def test_the_access_log_masks_form_tokens(link_token):
    from shared.logs import formatter

    logger = gunicorn_logger()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    keep = Keep()
    keep.setFormatter(formatter())
    logger.access_log.addHandler(keep)
    path = f"/form/{link_token}/done"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{path}?from=%2Fform%2F{link_token}",
        "PATH_INFO": path,
        "QUERY_STRING": f"from=%2Fform%2F{link_token}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_REFERER": f"https://outcomes.example/form/{link_token}",
    }
    response = SimpleNamespace(
        status="200 OK", sent=512, headers=[("Location", path), ("X-Request-ID", "req-from-the-app")]
    )
    request = SimpleNamespace(headers=[("REFERER", f"https://outcomes.example/form/{link_token}")])
    try:
        logger.access(response, request, environ, timedelta(milliseconds=12))
    finally:
        logger.access_log.removeHandler(keep)
    assert lines, "nothing was written to the access log"
    assert link_token not in "\n".join(lines)
    assert len(lines) == 1 and "\n" not in lines[0], "one JSON object per line"
    line = json.loads(lines[0])
    assert {key: line[key] for key in ("level", "logger", "event", "method", "path", "status", "remote_addr")} == {
        "level": "info",
        "logger": "gunicorn.access",
        "event": "request",
        "method": "GET",
        "path": "/form/<token>/done?from=%2Fform%2F<token>",
        "status": 200,
        "remote_addr": "203.0.113.9",
    }
    assert line["referer"] == "https://outcomes.example/form/<token>"
    assert line["duration_s"] == 0.012 and line["request_id"] == "req-from-the-app"
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=12))
    assert not [name for name, value in atoms.items() if link_token in str(value)]


def tiny_app(environ, start_response):
    """What gunicorn serves in the test below: a 404 for everything, like an unknown form path."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def test_gunicorn_run_as_the_procfile_runs_it_keeps_tokens_out_of_its_access_log(link_token):
    from shared.devredis import free_port

    procfile = (ROOT / "Procfile").read_text()
    outcomes_line = next(line for line in procfile.splitlines() if line.startswith("outcomes:"))
    options = re.search(r"--config (\S+)", outcomes_line)
    assert options, "the Procfile's gunicorn commands name the configuration"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            options[1],
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "tests.outcomes.test_form_tokens_not_logged:tiny_app",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    try:
        url = f"http://127.0.0.1:{port}/form/{link_token}/whatever"
        deadline = time.monotonic() + 60  # a worker boots in seconds, or tens of them on a busy machine
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as error:
                assert error.code == 404
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert access, output
    assert {(line["method"], line["path"], line["status"]) for line in access} == {
        ("GET", "/form/<token>/whatever", 404)
    }, output
    assert link_token not in output


def test_flasks_exception_log_line_masks_form_tokens(outcomes_app, link_token, caplog):
    with outcomes_app.test_request_context(f"/form/{link_token}/done", method="POST"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            outcomes_app.log_exception(sys.exc_info())
    assert "Exception on /form/<token>/done [POST]" in caplog.text
    assert link_token not in caplog.text
