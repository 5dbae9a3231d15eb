"""The services' JSON answers (``shared.service.OrjsonResponses``): written by orjson, read back
as Flask's own encoder would have written them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from flask import Flask, jsonify

from shared.service import OrjsonResponses

WHEN = datetime(2026, 12, 3, 17, 30, tzinfo=UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def app_answering(value) -> Flask:
    app = Flask(__name__)
    app.json = OrjsonResponses(app)
    app.add_url_rule("/", "answer", lambda: jsonify(value))
    return app


def test_an_answer_reads_back_as_flask_would_have_written_it():
    value = {
        "title": "Opération Ö",
        "zeta": 1,
        "alpha": [1.5, None, True],
        "when": WHEN,
        "day": date(2026, 12, 3),
        "id": ID,
        "amount": Decimal("2.50"),
    }
    flask_own = Flask(__name__)
    flask_own.json.sort_keys = False
    flask_own.add_url_rule("/", "answer", lambda: jsonify(value))
    ours, theirs = app_answering(value).test_client().get("/"), flask_own.test_client().get("/")
    assert ours.status_code == 200 and ours.mimetype == "application/json"
    assert ours.json == theirs.json
    assert ours.json["when"] == "Thu, 03 Dec 2026 17:30:00 GMT" and ours.json["id"] == str(ID)
    assert list(ours.json) == list(value)  # the order given, not sorted
    assert ours.data.endswith(b"\n") and ours.data.count(b"\n") == 1
    assert b'"when":"Thu, 03 Dec 2026 17:30:00 GMT"' in ours.data  # orjson's compact writing, not the fallback's


def test_what_orjson_cannot_write_is_answered_as_flask_writes_it():
    value = {"count": 2**70, "title": "Opération"}
    response = app_answering(value).test_client().get("/")
    assert response.status_code == 200 and response.json == value


def test_an_answer_orjson_writes_is_compact_and_in_utf8():
    response = app_answering({"zeta": "Opération", "alpha": 1}).test_client().get("/")
    assert response.data == '{"zeta":"Opération","alpha":1}\n'.encode()


def test_debug_mode_answers_are_indented_as_flask_does_it():
    app = app_answering({"zeta": 1, "alpha": 2})
    app.debug = True
    assert app.test_client().get("/").data == json.dumps({"zeta": 1, "alpha": 2}, indent=2).encode() + b"\n"
