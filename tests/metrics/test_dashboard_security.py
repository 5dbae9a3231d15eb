"""The dashboard's session and audit trail: the cookie carries a random session id (never the
JWT), the session lives server-side and signing out deletes it there; the cookie is Secure behind
https; every sign-in, sign-out, read and refusal is in the audit log, never the token; CSV cells
that a spreadsheet would read as a formula are neutralised."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from services.metrics.export import _csv_value
from tests.metrics.test_dashboard import csrf_token, raw, sign_in


def audit_rows(metrics_app) -> list:
    model = metrics_app.extensions["service"].models.AuditEntry
    session = metrics_app.extensions["database"].session()
    try:
        return session.scalars(select(model).order_by(model.id)).all()
    finally:
        session.close()


def as_text(row) -> str:
    return " ".join(
        str(getattr(row, name))
        for name in (
            "actor",
            "actor_org",
            "actor_roles",
            "method",
            "path",
            "action",
            "target_type",
            "target_id",
            "detail",
        )
    )


def cookie_value(response) -> str:
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("nclcc_dashboard="))
    return header.split(";", 1)[0].split("=", 1)[1]


def test_the_cookie_holds_a_session_id_not_the_token(metrics_app, metrics_client, redis_conn, token):
    jwt = raw(token("NCLCC", "leader", sub="chief@nclcc"))
    response = sign_in(metrics_client, jwt)
    assert response.status_code == 303
    value = cookie_value(response)
    assert jwt not in value and jwt.split(".")[1] not in value
    stored = metrics_app.session_interface.get_signing_serializer(metrics_app).loads(value)
    assert set(stored) <= {"dashboard_session", "csrf_token", "_permanent"}
    assert len(stored["dashboard_session"]) >= 40 and "." not in stored["dashboard_session"]
    # The session lives in Redis, under a digest of the id, and holds no token either.
    keys = redis_conn.keys("metrics:dashboard-session:*")
    assert len(keys) == 1 and stored["dashboard_session"].encode() not in keys[0]
    record = redis_conn.get(keys[0]).decode()
    assert jwt not in record and '"sub": "chief@nclcc"' in record
    assert 0 < redis_conn.ttl(keys[0]) <= 8 * 3600

    # Signing out deletes it server-side: the same cookie, replayed, is no longer a session.
    page = metrics_client.get("/dashboard").get_data(as_text=True)
    replay = metrics_app.test_client()
    replay.set_cookie("nclcc_dashboard", value, path="/dashboard")
    assert replay.get("/dashboard").status_code == 200
    assert metrics_client.post("/dashboard/sign-out", data={"csrf_token": csrf_token(page)}).status_code == 303
    assert redis_conn.keys("metrics:dashboard-session:*") == []
    assert replay.get("/dashboard").status_code == 303


def test_the_cookie_is_secure_httponly_and_strict_behind_https(metrics_app, token):
    from services.metrics import create_app

    settings = metrics_app.extensions["settings"]
    secure = create_app(
        {"settings": {"testing": True, "public_urls": {**settings.public_urls, "metrics": "https://metrics.example"}}}
    )
    try:
        response = sign_in(secure.test_client(), raw(token("NCLCC", "leader")))
        assert response.status_code == 303
        header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("nclcc_dashboard="))
        assert "; Secure" in header and "; HttpOnly" in header and "SameSite=Strict" in header
    finally:
        secure.extensions["database"].engine.dispose()


def test_the_form_cookie_is_secure_httponly_and_strict_behind_https(app, outcomes_app, token, pump_events):
    from services.outcomes import create_app
    from shared.form_links import form_token
    from tests.outcomes.helpers import issued_returns

    return_id = issued_returns(app.test_client(), token, pump_events, recipients=("GMP",))["GMP"]
    settings = outcomes_app.extensions["settings"]
    secure = create_app(
        {"settings": {"testing": True, "public_urls": {**settings.public_urls, "outcomes": "https://outcomes.example"}}}
    )
    try:
        response = secure.test_client().get(f"/form/{form_token(settings, return_id)}")
        assert response.status_code == 200
        header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
        assert "; Secure" in header and "; HttpOnly" in header and "SameSite=Strict" in header
    finally:
        secure.extensions["database"].engine.dispose()
    plain = outcomes_app.test_client().get(f"/form/{form_token(settings, return_id)}")
    assert "Secure" not in plain.headers["Set-Cookie"] and "HttpOnly" in plain.headers["Set-Cookie"]


def test_sign_ins_reads_refusals_and_sign_outs_are_audited(metrics_app, metrics_client, token):
    leader = raw(token("NCLCC", "leader", sub="chief@nclcc"))
    recipient = raw(token("GMP", "recipient", sub="analyst@gmp"))
    assert metrics_client.get("/dashboard").status_code == 303  # no session yet
    assert sign_in(metrics_client, "not.a.token").status_code == 401
    assert sign_in(metrics_client, recipient).status_code == 403
    assert sign_in(metrics_client, leader).status_code == 303
    page = metrics_client.get("/dashboard?threat_area=firearms")
    assert page.status_code == 200
    assert metrics_client.get("/dashboard?from=2026-13").status_code == 422
    assert (
        metrics_client.post(
            "/dashboard/sign-out", data={"csrf_token": csrf_token(page.get_data(as_text=True))}
        ).status_code
        == 303
    )
    assert metrics_client.get("/dashboard/static/dashboard.css").status_code == 200  # not a read of anything

    rows = audit_rows(metrics_app)
    summary = [(r.action, r.status_code, r.outcome, r.actor) for r in rows]
    assert summary == [
        ("GET /dashboard", 303, "refused", None),
        ("GET /dashboard/sign-in", 200, "allowed", None),
        ("POST /dashboard/sign-in", 401, "refused", None),
        ("GET /dashboard/sign-in", 200, "allowed", None),
        ("POST /dashboard/sign-in", 403, "refused", "analyst@gmp"),
        ("GET /dashboard/sign-in", 200, "allowed", None),
        ("POST /dashboard/sign-in", 303, "allowed", "chief@nclcc"),
        ("GET /dashboard", 200, "allowed", "chief@nclcc"),
        ("GET /dashboard", 422, "invalid", "chief@nclcc"),
        ("POST /dashboard/sign-out", 303, "allowed", "chief@nclcc"),
    ], summary
    by_action = {(r.action, r.status_code): r for r in rows}
    assert by_action[("GET /dashboard", 303)].detail == "refused: not signed in"
    assert by_action[("POST /dashboard/sign-in", 401)].detail.startswith("token refused: ")
    assert by_action[("POST /dashboard/sign-in", 403)].detail == "refused: the dashboard is for leadership"
    assert by_action[("POST /dashboard/sign-in", 403)].actor_org == "GMP"
    signed_in = by_action[("POST /dashboard/sign-in", 303)]
    assert signed_in.actor_roles == "leader" and signed_in.target_type == "dashboard_session"
    signed_out = by_action[("POST /dashboard/sign-out", 303)]
    assert signed_out.target_id == signed_in.target_id and signed_out.detail == "signed out"
    read = by_action[("GET /dashboard", 200)]
    assert read.path == "/dashboard?threat_area=firearms" and read.target_type == "dashboard"
    assert by_action[("GET /dashboard", 422)].detail == "invalid: filters from"
    # Never the token, nor the session id.
    everything = " ".join(as_text(r) for r in rows)
    for secret in (leader, recipient, "not.a.token"):
        assert secret not in everything


def test_an_ended_session_is_audited_as_a_refusal(metrics_app, metrics_client, token, monkeypatch):
    from services.metrics import dashboard

    assert sign_in(metrics_client, raw(token("NCLCC", "leader", sub="chief@nclcc"))).status_code == 303
    monkeypatch.setattr(dashboard, "now", lambda: 4102444800)  # 2100
    assert metrics_client.get("/dashboard").status_code == 303
    last = audit_rows(metrics_app)[-1]
    assert (last.action, last.outcome, last.detail) == (
        "GET /dashboard",
        "refused",
        "refused: dashboard session expired",
    )


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1", "\n=1+1"])
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(value):
    assert _csv_value(value) == "'" + value


def test_the_csv_export_neutralises_a_title_starting_with_a_tab(
    client, token, metrics_client, metrics_app, app, outcomes_app, pump_events, run_jobs
):
    from tests.dissemination.helpers import package_body

    title = '\t=HYPERLINK("http://x.example")'
    response = client.post("/api/v1/packages", json=package_body(title=title), headers=token())
    if response.status_code != 201:
        pytest.skip("the dissemination service refuses such titles")
    package = response.get_json()
    assert client.post(f"/api/v1/packages/{package['id']}/issue", headers=token()).status_code == 200
    pump_events(source=app, target=metrics_app)
    exported = metrics_client.get("/api/v1/metrics/export.csv", headers=token("NCLCC", "leader"))
    row = next(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert row["title"] == "'" + title
