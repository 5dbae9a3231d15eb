"""Hostile input, as a penetration test sends it: every service answers a clear 4xx in its one
error shape, naming the field at fault, reads no more than it must, and changes nothing."""

from __future__ import annotations

import json
import time

import pytest

from shared import signing
from tests.dissemination.helpers import create_package, package_body
from tests.outcomes.helpers import issued_returns, outcome_body

MIB = 1024 * 1024


def admin(token):
    return token("NCLCC", "issuer,admin,leader")


def assert_error(response, code: int, field: str | None = None, location: str = "json") -> dict:
    assert response.status_code == code, (response.status_code, response.get_data(as_text=True)[:500])
    body = response.get_json()
    assert body["code"] == code and body["status"] and body["message"], body
    if field is not None:
        # Nested fields are nested in errors, like marshmallow's, and dotted in the message.
        assert field.split(".")[0] in body["errors"][location], body
        assert field in body["message"], body
    return body


def organisation_count(client, token) -> int:
    response = client.get("/api/v1/organisations?per_page=1", headers=token())
    return json.loads(response.headers["X-Pagination"])["total"]


class UnreadableBody:
    """A request body that fails the test if the service reads a byte of it."""

    def __init__(self):
        self.read_calls = 0

    def read(self, *_args):
        self.read_calls += 1
        raise AssertionError("the service read a body it should have refused unread")

    readline = readinto = read


def post_unread(client, path: str, headers: dict, content_length: int | None):
    body = UnreadableBody()
    environ = {"wsgi.input": body}
    if content_length is None:
        # Chunked: no Content-Length, the server marks the stream as terminated.
        environ["wsgi.input_terminated"] = True
        headers = {**headers, "Transfer-Encoding": "chunked"}
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    response = client.post(path, headers={"Content-Type": "application/json", **headers}, environ_overrides=environ)
    return response, body


def well_formed_signature() -> dict:
    return {signing.TIMESTAMP_HEADER: str(int(time.time())), signing.SIGNATURE_HEADER: "sha256=" + "0" * 64}


# --- 1. body limits ---------------------------------------------------------------------------


def test_a_body_over_1_mib_is_413_in_the_error_shape_on_every_service(client, outcomes_client, metrics_client, token):
    before = organisation_count(client, token)
    big = json.dumps({"code": "BIG", "name": "x" * MIB, "kind": "force"})
    for service, path in (
        (client, "/api/v1/organisations"),
        (outcomes_client, "/api/v1/chase-policy"),
        (metrics_client, "/api/v1/metrics/summary"),
    ):
        method = service.put if "chase" in path else service.post
        body = assert_error(method(path, data=big, headers={**admin(token), "Content-Type": "application/json"}), 413)
        assert "1 MiB" in body["message"]
    assert organisation_count(client, token) == before


def test_an_unauthenticated_400_mb_event_is_refused_without_reading_it(client):
    response, body = post_unread(client, "/internal/events", well_formed_signature(), 400 * MIB)
    assert_error(response, 413)
    assert body.read_calls == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {signing.TIMESTAMP_HEADER: str(int(time.time()))},
        {signing.TIMESTAMP_HEADER: "yesterday", signing.SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {signing.TIMESTAMP_HEADER: str(int(time.time())), signing.SIGNATURE_HEADER: "md5=abc"},
        {signing.TIMESTAMP_HEADER: str(int(time.time())), signing.SIGNATURE_HEADER: "sha256=" + "z" * 64},
        {signing.TIMESTAMP_HEADER: "1" * 40, signing.SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {signing.TIMESTAMP_HEADER: str(int(time.time()) - 3600), signing.SIGNATURE_HEADER: "sha256=" + "0" * 64},
    ],
    ids=["none", "no-signature", "garbled-timestamp", "wrong-scheme", "not-hex", "absurd-timestamp", "stale"],
)
def test_missing_or_garbled_signature_headers_are_401_before_the_body_is_read(client, headers):
    response, body = post_unread(client, "/internal/events", headers, 400 * MIB)
    assert_error(response, 401)
    assert body.read_calls == 0


def test_an_event_without_a_content_length_is_refused_unread(client):
    response, body = post_unread(client, "/internal/events", well_formed_signature(), None)
    assert response.status_code in (411, 413)
    assert_error(response, response.status_code)
    assert body.read_calls == 0


def test_a_chunked_api_body_over_the_limit_is_413(client, token):
    """Without a Content-Length the limit holds while the body is read."""
    import io

    before = organisation_count(client, token)
    data = json.dumps({"code": "BIG", "name": "x" * (2 * MIB), "kind": "force"}).encode()
    response = client.post(
        "/api/v1/organisations",
        headers={**admin(token), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": io.BytesIO(data), "wsgi.input_terminated": True},
    )
    assert_error(response, 413)
    assert organisation_count(client, token) == before


def test_a_signed_event_within_the_limit_is_still_applied(client, app):
    message = {
        "id": "6b0f1a52-0c4e-4a53-9a43-8f4d7f1a2b3c",
        "type": "something.else",
        "source": "outcomes",
        "aggregate_id": "x",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "payload": {"note": "hello"},
    }
    body = json.dumps(message).encode()
    secret = app.extensions["settings"].event_secret
    response = client.post("/internal/events", data=body, headers=signing.signed_headers(secret, body))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["result"] in ("applied", "ignored")


# --- 2. hostile values --------------------------------------------------------------------


@pytest.mark.parametrize("page", ["99999999999999999999", "1" + "0" * 400, "2147483648"])
def test_an_absurd_page_number_is_422_naming_page(client, outcomes_client, metrics_client, token, page):
    for service, path in (
        (client, "/api/v1/organisations"),
        (client, "/api/v1/audit"),
        (client, "/api/v1/outbox"),
        (outcomes_client, "/api/v1/returns"),
        (metrics_client, "/api/v1/metrics/packages"),
    ):
        assert_error(service.get(f"{path}?page={page}", headers=admin(token)), 422, "page", "query")


def test_a_page_beyond_the_last_is_an_empty_page(client, outcomes_client, metrics_client, token):
    for service, path in (
        (client, "/api/v1/organisations"),
        (outcomes_client, "/api/v1/returns"),
        (metrics_client, "/api/v1/metrics/packages"),
    ):
        response = service.get(f"{path}?page=100000&per_page=100", headers=admin(token))
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == []


def test_an_absurd_id_in_the_path_is_422_naming_it(client, token):
    response = client.post("/api/v1/outbox/99999999999999999999/redeliver", headers=admin(token))
    assert_error(response, 422, "delivery_id", "path")
    assert client.post("/api/v1/outbox/2147483647/redeliver", headers=admin(token)).status_code == 404


def test_an_absurd_event_log_position_is_422(client, app):
    path = "/internal/events/log?after=99999999999999999999"
    headers = signing.signed_headers(app.extensions["settings"].event_secret, path.encode())
    assert_error(client.get(path, headers=headers), 422, "after", "query")


def test_deeply_nested_json_is_422(client, token):
    before = organisation_count(client, token)
    deep = b"[" * 100_000 + b"]" * 100_000
    body = assert_error(
        client.post("/api/v1/organisations", data=deep, headers={**admin(token), "Content-Type": "application/json"}),
        422,
    )
    assert "nested" in body["message"].lower() or "nested" in json.dumps(body["errors"]).lower()
    fairly_deep = '{"code": "DEEP", "kind": "force", "name": ' + "[" * 200 + "]" * 200 + "}"
    body = assert_error(
        client.post(
            "/api/v1/organisations", data=fairly_deep, headers={**admin(token), "Content-Type": "application/json"}
        ),
        422,
        "name",
    )
    assert organisation_count(client, token) == before


def test_a_nul_byte_in_a_json_string_is_422_naming_the_field(client, token):
    before = organisation_count(client, token)
    response = client.post(
        "/api/v1/organisations", json={"code": "NUL", "name": "Nul\u0000Force", "kind": "force"}, headers=admin(token)
    )
    assert_error(response, 422, "name")
    response = client.post("/api/v1/packages", json=package_body(recipients=["GMP", "M\u0000PS"]), headers=token())
    assert_error(response, 422, "recipients.1")
    response = client.post(
        "/api/v1/organisations", json={"code": "NUL", "na\u0000me": "Nul", "kind": "force"}, headers=admin(token)
    )
    assert_error(response, 422)
    assert organisation_count(client, token) == before


def test_a_nul_byte_in_a_filed_outcome_is_422_and_files_nothing(client, outcomes_client, token, pump_events):
    returns = issued_returns(client, token, pump_events, recipients=("GMP",))
    gmp = token("GMP", "recipient")
    body = outcome_body(intelligence_feedback={"usefulness": 4, "accuracy": "confirmed", "timeliness": "ti\u0000mely"})
    response = outcomes_client.post(f"/api/v1/returns/{returns['GMP']}/outcomes", json=body, headers=gmp)
    assert_error(response, 422, "intelligence_feedback.timeliness")
    response = outcomes_client.post(
        f"/api/v1/returns/{returns['GMP']}/outcomes", json=outcome_body(comments="\u0000"), headers=gmp
    )
    assert_error(response, 422, "comments")
    assert outcomes_client.get(f"/api/v1/returns/{returns['GMP']}/outcomes", headers=gmp).get_json() == []


def test_a_lone_surrogate_in_json_is_422_naming_the_field(client, token):
    before = organisation_count(client, token)
    raw = b'{"code": "SUR", "name": "Surrogate \\ud800 Force", "kind": "force"}'
    response = client.post(
        "/api/v1/organisations", data=raw, headers={**admin(token), "Content-Type": "application/json"}
    )
    assert_error(response, 422, "name")
    assert organisation_count(client, token) == before


def test_a_nul_byte_in_the_query_string_is_422_naming_the_parameter(client, outcomes_client, metrics_client, token):
    assert_error(client.get("/api/v1/organisations?region=North%00West", headers=token()), 422, "region", "query")
    assert_error(client.get("/api/v1/packages?q=%00", headers=token()), 422, "q", "query")
    assert_error(outcomes_client.get("/api/v1/returns?org=G%00MP", headers=admin(token)), 422, "org", "query")
    assert_error(
        metrics_client.get("/api/v1/metrics/summary?organisation=G%00MP", headers=admin(token)),
        422,
        "organisation",
        "query",
    )
    assert_error(client.get("/api/v1/audit?actor=a%00b", headers=admin(token)), 422, "actor", "query")


def test_a_nul_byte_in_a_path_segment_is_422_naming_it(client, metrics_client, token):
    assert_error(client.get("/api/v1/organisations/GM%00P", headers=token()), 422, "code", "path")
    assert_error(
        client.patch("/api/v1/organisations/GM%00P", json={"name": "Greater Manchester"}, headers=admin(token)),
        422,
        "code",
        "path",
    )
    assert_error(metrics_client.get("/api/v1/metrics/organisations/G%00MP", headers=admin(token)), 422, "code", "path")


def test_refused_hostile_requests_are_still_audited(client, token):
    client.get("/api/v1/organisations/GM%00P", headers=token())
    entries = client.get("/api/v1/audit?outcome=invalid", headers=admin(token)).get_json()
    assert any(
        entry["path"].startswith("/api/v1/organisations/GM") and entry["status_code"] == 422 for entry in entries
    ), entries


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"a string"', b"null", b"42", b"true"])
def test_a_json_body_that_is_not_an_object_is_422(client, token, raw):
    before = organisation_count(client, token)
    assert_error(
        client.post("/api/v1/organisations", data=raw, headers={**admin(token), "Content-Type": "application/json"}),
        422,
    )
    package = create_package(client, token())
    assert_error(
        client.patch(
            f"/api/v1/packages/{package['id']}", data=raw, headers={**token(), "Content-Type": "application/json"}
        ),
        422,
    )
    assert organisation_count(client, token) == before


@pytest.mark.parametrize("raw", [b"{not json", b'{"code": "X",}', b"\xff\xfe", b'{"n": NaN}', b'{"n": Infinity}'])
def test_an_invalid_json_body_is_400_in_the_error_shape(client, token, raw):
    assert_error(
        client.post("/api/v1/organisations", data=raw, headers={**admin(token), "Content-Type": "application/json"}),
        400,
    )


# --- 3. what schemathesis found -------------------------------------------------------------


def test_x_pagination_is_documented_as_the_json_string_it_is(client, token):
    spec = client.get("/openapi.json").get_json()
    header = spec["components"]["headers"]["PAGINATION"]
    assert header["schema"]["type"] == "string"
    assert "JSON" in header["description"]
    value = client.get("/api/v1/organisations", headers=token()).headers["X-Pagination"]
    assert json.loads(value)["total"] >= 1


def test_patch_with_no_body_or_no_field_is_422(client, token):
    package = create_package(client, token())
    for path, headers in ((f"/api/v1/packages/{package['id']}", token()), ("/api/v1/organisations/GMP", admin(token))):
        for kwargs in ({}, {"json": {}}):
            body = assert_error(client.patch(path, headers=headers, **kwargs), 422)
            assert "at least one field" in json.dumps(body).lower()
    after = client.get(f"/api/v1/packages/{package['id']}", headers=token()).get_json()
    assert after["updated_at"] == package["updated_at"]


def test_update_bodies_are_documented_as_needing_a_field(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/api/v1/packages/{package_id}", "/api/v1/organisations/{code}"):
        schema = spec["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]
        name = schema["$ref"].rsplit("/", 1)[-1]
        assert spec["components"]["schemas"][name]["minProperties"] == 1


# --- what `make fuzz` found ------------------------------------------------------------------


def test_an_unknown_query_parameter_is_422_naming_it(client, outcomes_client, metrics_client, token):
    """A mistyped filter must not quietly list everything."""
    body = assert_error(
        outcomes_client.get("/api/v1/returns?statuss=overdue", headers=admin(token)), 422, "statuss", "query"
    )
    assert "status" in body["errors"]["query"]["statuss"][0]
    assert_error(client.get("/api/v1/packages?page=1&per_page=5&colour=red", headers=token()), 422, "colour", "query")
    assert_error(metrics_client.get("/api/v1/metrics/grading?x=1", headers=admin(token)), 422, "x", "query")
    assert client.get("/api/v1/packages?page=1&per_page=5&status=draft", headers=token()).status_code == 200


def test_booleans_are_true_or_false_only(client, token):
    before = organisation_count(client, token)
    for value in (0, 1, "yes", "true", None):
        response = client.post(
            "/api/v1/organisations",
            json={"code": "BOOL", "name": "Bool Force", "kind": "other", "active": value},
            headers=admin(token),
        )
        assert_error(response, 422, "active")
        assert_error(
            client.patch("/api/v1/organisations/GMP", json={"active": value}, headers=admin(token)), 422, "active"
        )
    assert organisation_count(client, token) == before
    assert_error(client.get("/api/v1/organisations?active=1", headers=token()), 422, "active", "query")
    assert client.get("/api/v1/organisations?active=false", headers=token()).get_json() == []


def test_a_webhook_url_the_document_allows_is_accepted(client, token):
    response = client.patch("/api/v1/organisations/GMP", json={"webhook_url": "http://"}, headers=admin(token))
    assert_error(response, 422, "webhook_url")
    response = client.patch(
        "/api/v1/organisations/GMP", json={"webhook_url": "https://hooks.gmp.example:8443/in?x=1"}, headers=admin(token)
    )
    assert response.status_code == 200, response.get_json()
    # http and loopback pass the schema, and the SSRF guard lets them through only for local work.
    from dataclasses import replace

    settings = client.application.extensions["settings"]
    client.application.extensions["settings"] = replace(settings, webhook_allow_private=True)
    try:
        for url in ("http://127.0.0.1:5000/hook", "http://localhost/h%C3%A9"):
            response = client.patch("/api/v1/organisations/GMP", json={"webhook_url": url}, headers=admin(token))
            assert response.status_code == 200, response.get_json()
    finally:
        client.application.extensions["settings"] = settings


def test_a_summary_ending_before_this_year_needs_a_from(metrics_client, token):
    body = assert_error(
        metrics_client.get("/api/v1/metrics/summary?to=2000-01", headers=admin(token)), 422, "to", "query"
    )
    assert "from" in body["errors"]["query"]["to"][0]
    assert (
        metrics_client.get("/api/v1/metrics/summary?from=2000-01&to=2000-12", headers=admin(token)).status_code == 200
    )


# -- the recipients' pages: no input gets a 500 ---------------------------------------------------

HOSTILE_VALUES = [
    "",
    "%00",
    "a%00b",
    "%ED%A0%80",  # a lone surrogate, UTF-8 encoded
    "%FF%FE",
    "x" * 5000,
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "99999999999999999999999",
    "-1",
    "1e9",
    "%0d%0aSet-Cookie:%20x=1",
]


def _recipient_session(app, token):
    import re

    browser = app.test_client()
    page = browser.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    jwt = token("GMP", "recipient")["Authorization"].removeprefix("Bearer ")
    assert browser.post("/sign-in", data={"csrf_token": csrf, "token": jwt}).status_code == 303
    return browser, csrf


def test_hostile_input_to_the_recipient_pages_is_never_a_500(app, token):
    import uuid

    from tests.dissemination.helpers import issue_package

    client = app.test_client()
    package = issue_package(client, token(), recipients=["GMP"])
    inbox = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()
    own = next(item["id"] for item in inbox if item["package"]["id"] == package["id"])
    signed_in, csrf = _recipient_session(app, token)
    anonymous = app.test_client()
    for browser in (anonymous, signed_in):
        for value in HOSTILE_VALUES:
            asked = [
                browser.get(f"/inbox?page={value}"),
                browser.get(f"/inbox?{value}={value}"),
                browser.get(f"/sign-in?next={value}&reason={value}"),
                browser.get(f"/sign-in/oidc?next={value}"),
                browser.get(f"/sign-in/callback?code={value}&state={value}"),
                browser.get(f"/disseminations/{value}"),
                browser.get(f"/disseminations/{own}?acknowledged={value}"),
                browser.post(f"/disseminations/{own}/acknowledge", data={"csrf_token": value}),
                browser.post("/sign-in", data={"csrf_token": csrf, "token": value, "next": value}),
                browser.post("/sign-in", data={"csrf_token": value, "token": value}),
            ]
            for response in asked:
                assert response.status_code < 500, (value, response.request.path, response.status_code)
        for path in (f"/disseminations/{uuid.uuid4()}", f"/disseminations/{uuid.uuid4()}/return"):
            assert browser.get(path).status_code in (303, 404)
    # The centre's pages, signed in as its staff.
    centre = app.test_client()
    page = centre.get("/sign-in").get_data(as_text=True)
    import re

    centre_csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    token_value = token()["Authorization"].removeprefix("Bearer ")
    assert centre.post("/sign-in", data={"csrf_token": centre_csrf, "token": token_value}).status_code == 303
    for value in HOSTILE_VALUES:
        for response in (
            centre.get(f"/packages?page={value}"),
            centre.get(f"/packages/{value}"),
            centre.get(f"/packages/{package['id']}?{value}={value}"),
        ):
            assert response.status_code < 500, (value, response.request.path, response.status_code)
    assert centre.get(f"/packages/{uuid.uuid4()}").status_code == 404
    # A token of every shape: refused with a page, never an error.
    browser = app.test_client()
    for value in ("Bearer ", "a.b.c", "e30.e30.", "x" * 9000, "\u0000", "Bearer " + "é" * 100):
        page = browser.get("/sign-in").get_data(as_text=True)
        fresh = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        response = browser.post("/sign-in", data={"csrf_token": fresh, "token": value})
        assert response.status_code in (401, 422), (value[:20], response.status_code)
    # The signed-in session survived all of it, and nothing was acknowledged by accident.
    assert signed_in.get("/inbox").status_code == 200
    item = client.get(f"/api/v1/disseminations/{own}", headers=token("GMP", "recipient")).get_json()
    assert item["acknowledged_at"] is None
