"""The leadership dashboard through Flask's test client: signing in and out, who may see it, what it
shows from the hand-checked history in scenario.py, and its filters."""

from __future__ import annotations

import html
import re
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.metrics import scenario


@pytest.fixture
def history(snapshot_world):
    return snapshot_world(scenario.history)


def raw(headers: dict) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found[1]


def sign_in(client, jwt: str, csrf: str | None = None):
    if csrf is None:
        csrf = csrf_token(client.get("/dashboard/sign-in").get_data(as_text=True))
    return client.post("/dashboard/sign-in", data={"csrf_token": csrf, "token": jwt})


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def card(page: str, name: str) -> str:
    found = re.search(rf'id="card-{name}">.*?class="card__value">([^<]*)<', page, re.S)
    assert found, f"no card {name}"
    return found[1]


def location(response) -> str:
    return response.headers["Location"]


def test_without_a_session_the_dashboard_sends_you_to_sign_in(metrics_client):
    response = metrics_client.get("/dashboard")
    assert response.status_code in (302, 303)
    assert location(response).endswith("/dashboard/sign-in")
    page = metrics_client.get("/dashboard/sign-in")
    assert page.status_code == 200 and "Access token" in text(page)
    assert page.headers["Cache-Control"] == "no-store"


def test_a_leader_signs_in_and_sees_the_figures(history, metrics_client, token):
    response = sign_in(metrics_client, raw(token("NCLCC", "leader", sub="chief@nclcc")))
    assert response.status_code == 303 and location(response).endswith("/dashboard")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("nclcc_dashboard=") and "Path=/dashboard" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # http in tests
    assert "Expires=" in cookie  # a permanent session, of 8 hours

    response = metrics_client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no scripts
    page = text(response)
    assert "NCLCC outcomes dashboard" in page and "chief@nclcc" in page and "Sign out" in page
    for package in ("a", "b", "c"):
        assert history[package]["reference"] in page
    assert "<script" not in page
    # The headline cards, from the scenario: A and C issued (B withdrawn); 3 of 4 final returns;
    # GMP and MPS (on C) acted; 5 arrests on the amended GMP return; 1 child safeguarded.
    assert card(page, "packages") == "2"
    assert card(page, "return-rate") == "75%"
    assert card(page, "actioned") == "67%"
    assert card(page, "arrests") == "5"
    assert card(page, "acknowledged") == "75%"  # GMP acknowledged A; MPS filed on A and C
    # Every result kind in the results table: 1 person safeguarded, a child, contributed.
    assert re.search(
        r'id="result-people_safeguarded"><th scope="row">People safeguarded</th><td[^>]*>1</td><td>0</td><td>1</td>',
        page,
    )
    assert re.search(r'id="result-children_safeguarded"><th scope="row">Children safeguarded</th><td[^>]*>1</td>', page)
    # The funnel prints its numbers beside the bars.
    funnel = re.search(r'aria-labelledby="funnel-title funnel-desc".*?</svg>', page, re.S)[0]
    for words in ("Sent to recipients", "Delivered", "Acknowledged", "Final return filed", "Final, action taken"):
        assert words in funnel
    assert "Final return filed: 3 (75% of those sent)" in funnel
    # Compliance: WMP (nothing returned, overdue) comes first, then MPS and GMP (all returned).
    compliance = re.search(r'id="compliance-title".*?</svg>', page, re.S)[0]
    codes = re.findall(r'class="chart__strong" x="8"[^>]*>([A-Z-]+)<', compliance)
    assert codes[0] == "WMP" and set(codes) == {"GMP", "MPS", "WMP"}
    assert "0% (0 of 1)" in compliance and 'class="chart__value overdue"' in compliance
    # The trend's table has this month with its 4 returns expected.
    assert re.search(r"<th scope=\"row\">[A-Z][a-z]+ \d{4}</th><td>4</td><td>3</td><td>2</td>", page)
    # Grading calibration: 2B judged 3 times, 2 confirmed or partly.
    assert "67%" in page and "2 of 3 judged confirmed" in page
    assert page.count("not yet judged") == 14
    # Verdicts as words, with reasons.
    assert ">Actioned<" in page and ">No action<" in page and "Withdrawn by the centre." in page


def test_admin_may_sign_in_too(history, metrics_client, token):
    assert sign_in(metrics_client, raw(token("NCLCC", "admin"))).status_code == 303
    assert metrics_client.get("/dashboard").status_code == 200
    signed_in = metrics_client.get("/dashboard/sign-in")  # already signed in: straight to the dashboard
    assert signed_in.status_code == 303 and location(signed_in).endswith("/dashboard")


def test_a_pasted_authorization_header_value_is_accepted(metrics_client, token):
    response = sign_in(metrics_client, token("NCLCC", "leader")["Authorization"])
    assert response.status_code == 303
    assert metrics_client.get("/dashboard").status_code == 200


def test_a_recipient_is_told_the_dashboard_is_for_leadership(metrics_client, token):
    response = sign_in(metrics_client, raw(token("GMP", "recipient")))
    assert response.status_code == 403
    page = text(response)
    assert "for leadership" in page and "/api/v1/metrics/organisations/GMP" in page
    assert metrics_client.get("/dashboard").status_code == 303  # and nothing was kept
    assert sign_in(metrics_client, raw(token())).status_code == 403  # an issuer is not leadership


def test_a_garbage_or_expired_token_is_refused(metrics_app, metrics_client):
    from shared.auth import mint_token

    response = sign_in(metrics_client, "not.a.token")
    assert response.status_code == 401
    assert "could not be verified" in text(response)
    assert "not.a.token" not in text(response)  # what was pasted is never echoed back
    settings = metrics_app.extensions["settings"]
    expired = mint_token(settings, sub="chief@nclcc", org="NCLCC", roles=["leader"], ttl=timedelta(minutes=-1))
    response = sign_in(metrics_client, expired)
    assert response.status_code == 401 and "has expired" in text(response)
    forged = mint_token(replace(settings, jwt_secret="x" * 40), sub="chief@nclcc", org="NCLCC", roles=["leader"])
    assert sign_in(metrics_client, forged).status_code == 401
    assert sign_in(metrics_client, "").status_code == 422
    assert metrics_client.get("/dashboard").status_code == 303


def test_a_post_without_the_csrf_token_is_refused(metrics_client, token):
    leader = raw(token("NCLCC", "leader"))
    metrics_client.get("/dashboard/sign-in")  # a session exists, with its CSRF secret
    response = metrics_client.post("/dashboard/sign-in", data={"token": leader})
    assert response.status_code == 400
    assert metrics_client.post("/dashboard/sign-in", data={"token": leader, "csrf_token": "forged"}).status_code == 400
    assert metrics_client.get("/dashboard").status_code == 303  # not signed in

    assert sign_in(metrics_client, leader).status_code == 303
    assert metrics_client.post("/dashboard/sign-out").status_code == 400
    assert metrics_client.get("/dashboard").status_code == 200  # still signed in


def test_sign_out_ends_the_session(metrics_client, token):
    assert sign_in(metrics_client, raw(token("NCLCC", "leader"))).status_code == 303
    page = metrics_client.get("/dashboard").get_data(as_text=True)
    response = metrics_client.post("/dashboard/sign-out", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303 and "/dashboard/sign-in" in location(response)
    assert "You have signed out." in text(metrics_client.get(location(response)))
    response = metrics_client.get("/dashboard")
    assert response.status_code in (302, 303) and location(response).endswith("/dashboard/sign-in")


def session_id(client) -> str | None:
    with client.session_transaction("/dashboard") as stored:
        return stored.get("dashboard_session")


def test_a_token_that_expires_ends_the_session(metrics_app, metrics_client, monkeypatch):
    """The session keeps the token's expiry (not the token) and ends there."""
    from services.metrics import dashboard
    from shared.auth import mint_token

    settings = metrics_app.extensions["settings"]
    jwt = mint_token(settings, sub="chief@nclcc", org="NCLCC", roles=["leader"], ttl=timedelta(minutes=10))
    assert sign_in(metrics_client, jwt).status_code == 303
    assert metrics_client.get("/dashboard").status_code == 200
    with metrics_app.app_context():
        record = dashboard.load_session(session_id(metrics_client))
    token_exp = __import__("jwt").decode(jwt, options={"verify_signature": False})["exp"]
    assert record["ends_at"] == token_exp and "token" not in record

    monkeypatch.setattr(dashboard, "now", lambda: token_exp + 1)
    response = metrics_client.get("/dashboard")
    assert response.status_code == 303 and "reason=expired" in location(response)
    assert "Your token or your 8-hour session has expired" in text(metrics_client.get(location(response)))
    assert session_id(metrics_client) is None


def test_the_session_ends_eight_hours_after_signing_in(metrics_client, token, monkeypatch):
    from services.metrics import dashboard

    signed_in_at = time.time()
    monkeypatch.setattr(dashboard, "now", lambda: signed_in_at)
    assert sign_in(metrics_client, raw(token("NCLCC", "leader"))).status_code == 303  # a 12-hour token
    monkeypatch.setattr(dashboard, "now", lambda: signed_in_at + timedelta(hours=7, minutes=59).total_seconds())
    assert metrics_client.get("/dashboard").status_code == 200
    monkeypatch.setattr(dashboard, "now", lambda: signed_in_at + timedelta(hours=8, minutes=1).total_seconds())
    response = metrics_client.get("/dashboard")
    assert response.status_code == 303 and "reason=expired" in location(response)


def test_a_session_of_a_recipient_is_not_enough(metrics_app, metrics_client):
    from services.metrics import dashboard
    from shared.auth import Principal

    with metrics_app.app_context():
        made_up = dashboard.start_session(
            Principal("someone@gmp", "GMP", frozenset({"recipient"}), "OFFICIAL"), time.time() + 3600
        )
    with metrics_client.session_transaction("/dashboard") as stored:
        stored["dashboard_session"] = made_up
    assert metrics_client.get("/dashboard").status_code == 303


def test_a_made_up_session_id_is_not_a_session(metrics_client):
    with metrics_client.session_transaction("/dashboard") as stored:
        stored["dashboard_session"] = "made-up"
    response = metrics_client.get("/dashboard")
    assert response.status_code == 303 and "/dashboard/sign-in" in location(response)


def test_filters(history, metrics_client, token):
    sign_in(metrics_client, raw(token("NCLCC", "leader")))
    firearms = text(metrics_client.get("/dashboard?threat_area=firearms"))
    assert history["b"]["reference"] in firearms and history["a"]["reference"] not in firearms
    assert card(firearms, "arrests") == "0" and "Package outcomes:" in firearms and "firearms" in firearms
    assert '<option value="firearms" selected>' in firearms
    last_year = text(metrics_client.get("/dashboard?from=2020-01&to=2020-12"))
    assert "No packages were issued in this period." in last_year and card(last_year, "packages") == "0"
    assert "January 2020 to December 2020" in last_year
    empty_fields = metrics_client.get("/dashboard?from=&to=&threat_area=")
    assert empty_fields.status_code == 200 and card(text(empty_fields), "arrests") == "5"


@pytest.mark.parametrize(
    "query, field",
    [
        ("from=2026-13", "from"),
        ("to=13-2026", "to"),
        ("to=9999-12", "to"),
        ("from=2026-05&to=2026-01", "from"),
        ("from=1990-01", "from"),
        ("from=2000-01&to=2026-01", "from"),
        ("threat_area=burglary", "threat_area"),
        ("from=%00&threat_area=%3Cscript%3E", "from"),
    ],
)
def test_bad_filters_say_so_and_show_the_defaults(history, metrics_client, token, query, field):
    sign_in(metrics_client, raw(token("NCLCC", "leader")))
    response = metrics_client.get("/dashboard?" + query)
    assert response.status_code in (200, 422)
    page = text(response)
    assert "Some filters could not be used" in page
    assert f'id="{field}-error"' in page and 'aria-invalid="true"' in page
    assert "<script" not in response.get_data(as_text=True)
    assert card(page, "arrests") == "5"  # this year's figures, the default


def test_the_dashboard_is_not_in_the_api_document(metrics_client):
    paths = metrics_client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/dashboard")]


def test_the_cookie_is_secure_behind_https(metrics_app):
    from services.metrics import create_app

    assert metrics_app.config["SESSION_COOKIE_SECURE"] is False
    settings = metrics_app.extensions["settings"]
    secure = create_app(
        {"settings": {"testing": True, "public_urls": {**settings.public_urls, "metrics": "https://metrics.example"}}}
    )
    try:
        assert secure.config["SESSION_COOKIE_SECURE"] is True
        assert secure.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=8)
    finally:
        secure.extensions["database"].engine.dispose()
