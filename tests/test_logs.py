"""One renderer for every log line of a process: structlog's and the standard library's (RQ,
gunicorn, werkzeug, ours) alike, one JSON object per line outside development, readable lines in
development, never a secret or a form link's token."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared import logs


@pytest.fixture
def rendered(monkeypatch):
    """Configure logging as a process does (``configure(process, env)``) and read what it wrote."""

    def configure(process_name: str, env: dict) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.delenv("LOG_FORMAT", raising=False)
        monkeypatch.delenv("LOG_LEVEL", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        logs.configure_logging(process_name, env)
        [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "ofs-structured"]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        return buffer

    yield configure
    monkeypatch.undo()
    logs.configure_logging("pytest", {"APP_ENV": "test"})


def test_every_line_is_one_json_object_whoever_logged_it(rendered):
    output = rendered("worker", {"APP_ENV": "production"})
    with logs.job_context(request_id="abc", job_id="relay-1", queue="events"):
        logs.get_logger("shared.outbox").warning("event relay failed", subscriber="metrics", attempts=2)
        logging.getLogger("rq.worker").info("events: Job OK (%s)", "relay-1")
        try:
            raise RuntimeError("the database went away\nsecond line")
        except RuntimeError:
            logging.getLogger("shared.api").exception("unhandled error")
    logs.get_logger("shared.outbox").info("after the job")
    lines = output.getvalue().splitlines()
    assert len(lines) == 4, lines
    first, second, third, fourth = (json.loads(line) for line in lines)
    assert list(first)[:5] == ["timestamp", "level", "process", "logger", "event"]
    assert {key: first[key] for key in ("level", "process", "logger", "event", "request_id", "job_id")} == {
        "level": "warning",
        "process": "worker",
        "logger": "shared.outbox",
        "event": "event relay failed",
        "request_id": "abc",
        "job_id": "relay-1",
    }
    assert first["subscriber"] == "metrics" and first["attempts"] == 2 and first["timestamp"].endswith("Z")
    assert (second["logger"], second["event"], second["request_id"]) == ("rq.worker", "events: Job OK (relay-1)", "abc")
    assert third["level"] == "error" and "RuntimeError: the database went away" in third["exception"]
    # Outside the job, its request id is gone.
    assert fourth["event"] == "after the job" and "request_id" not in fourth and "job_id" not in fourth


def test_a_line_carries_values_of_any_kind_as_readable_json(rendered):
    """Whatever a line is given, it stays one JSON object: a UUID or a date as its text, a number
    too large for 64 bits as a number, anything else as its ``repr``, text beyond ASCII as itself."""
    import uuid
    from datetime import UTC, datetime

    output = rendered("outcomes", {"APP_ENV": "production"})
    event_id = uuid.uuid4()
    moment = datetime(2026, 12, 3, 17, 30, tzinfo=UTC)

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque thing>"

    log = logs.get_logger("shared.inbox")
    log.info("event applied", event_id=event_id, at=moment, thing=Opaque(), force="Brigade Ö")
    log.info("a large count", count=2**70, event_id=event_id, at=moment, thing=Opaque(), force="Brigade Ö")
    first, second = (json.loads(line) for line in output.getvalue().splitlines())
    assert second["count"] == 2**70 and second["event"] == "a large count"
    for line in (first, second):  # the second written by the standard library's encoder: the same
        assert line["event_id"] == str(event_id) and line["at"] == "2026-12-03T17:30:00+00:00"
        assert line["thing"] == "<opaque thing>" and line["force"] == "Brigade Ö"


def test_info_is_the_default_level_and_log_level_changes_it(rendered):
    output = rendered("cron", {"APP_ENV": "test"})
    logs.get_logger("shared.outbox").debug("event relayed")
    assert output.getvalue() == ""
    output = rendered("cron", {"APP_ENV": "test", "LOG_LEVEL": "debug"})
    logs.get_logger("shared.outbox").debug("event relayed")
    assert json.loads(output.getvalue())["event"] == "event relayed"


def test_no_secret_and_no_form_token_reaches_a_line(rendered):
    output = rendered("outcomes", {"APP_ENV": "production"})
    token = "eyJyZXR1cm4iOiIzZGQ2In0.aw3icA.Ni6aANVTZuVKrQCuJCJOnhQNSjM"
    log = logs.get_logger("services.outcomes.form")
    log.warning(
        "webhook refused",
        authorization="Bearer eyJhbGciOi.secret-jwt.sig",
        webhook_secret="whsec_c2VjcmV0LXNlY3JldA",
        smtp_password="hunter2-password",
        url=f"https://outcomes.example/form/{token}/done",
    )
    logging.getLogger("gunicorn.error").error("Error handling request /form/%s", token)
    logging.getLogger("werkzeug").info('127.0.0.1 - - "GET /form/%s HTTP/1.1" 200 -', token)
    text = output.getvalue()
    for secret in (token, token[:20], "secret-jwt", "whsec_c2VjcmV0", "hunter2"):
        assert secret not in text
    first = json.loads(text.splitlines()[0])
    assert first["authorization"] == first["webhook_secret"] == first["smtp_password"] == "[redacted]"
    assert first["url"] == "https://outcomes.example/form/<token>/done"
    assert "/form/<token>" in text.splitlines()[1] and "/form/<token>" in text.splitlines()[2]


def test_development_reads_as_plain_lines_unless_told_json(rendered):
    output = rendered("dissemination", {"APP_ENV": "development"})
    with logs.job_context(request_id="abc"):
        logs.get_logger("shared.inbox").info("event applied", type="outcome.filed", source="outcomes")
    line = output.getvalue().strip()
    assert not line.startswith("{")
    assert "event applied" in line and "request_id=abc" in line and "type=outcome.filed" in line
    output = rendered("dissemination", {"APP_ENV": "development", "LOG_FORMAT": "json"})
    logs.get_logger("shared.inbox").info("event applied")
    assert json.loads(output.getvalue())["process"] == "dissemination"


def test_sane_request_ids():
    assert logs.sane_request_id("abc-123_/:.") == "abc-123_/:."
    assert logs.sane_request_id("x" * 128) == "x" * 128
    for insane in ("", "x" * 129, "a b", "a\nb", "caf\u00e9", None, 42):
        assert logs.sane_request_id(insane) is None
    assert len(logs.new_request_id()) == 32 and logs.new_request_id() != logs.new_request_id()
