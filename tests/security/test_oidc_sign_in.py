"""Signing in to the recipients' pages (and the dashboard) with an identity provider: OpenID
Connect's authorization code flow with PKCE, against a real provider (oidc-provider-mock on a
loopback port). What each refusal looks like, and that each is audited."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest

from tests.dissemination.helpers import issue_package
from tests.dissemination.page_helpers import audit_rows, dissemination_id, location, text
from tests.oidc_provider import callback_path, start_provider

RECIPIENT = {"org": "GMP", "roles": ["recipient"], "clearance": "OFFICIAL-SENSITIVE", "email": "alice@gmp.example"}


@pytest.fixture(scope="module")
def provider():
    running, stop = start_provider()
    yield running
    stop()


@pytest.fixture
def oidc_app(app, provider):
    """The dissemination service signing people in with the provider (``app`` has migrated and
    seeded the database)."""
    from services.dissemination import create_app

    application = create_app({"settings": {"testing": True, **provider.settings()}})
    yield application
    application.extensions["database"].engine.dispose()


def sign_in_through(provider, client, sub: str, next_path: str | None = None):
    """The browser's journey: our sign-in, the provider's page, back to our callback."""
    start = client.get("/sign-in/oidc" + (f"?next={next_path}" if next_path else ""))
    assert start.status_code == 302, start.get_data(as_text=True)
    assert location(start).startswith(f"{provider.issuer}/oauth2/authorize?")
    back = provider.authorize(location(start), sub)
    return client.get(callback_path(back))


def test_a_recipient_signs_in_with_the_provider_and_reads_the_package(oidc_app, provider, client, token):
    package = issue_package(client, token(), recipients=["GMP"])
    gmp = dissemination_id(client, token, package["reference"])
    provider.set_user("alice@gmp", **RECIPIENT)
    browser = oidc_app.test_client()
    assert browser.get(f"/disseminations/{gmp}").status_code == 303
    page = text(browser.get("/sign-in"))
    assert "Sign in with your organisation’s account" in page

    response = sign_in_through(provider, browser, "alice@gmp", next_path=f"/disseminations/{gmp}")
    assert response.status_code == 303 and location(response) == f"/disseminations/{gmp}"
    read = browser.get(location(response))
    assert read.status_code == 200 and package["title"] in text(read)
    assert "Signed in as <strong>alice@gmp</strong> (GMP)" in text(read)

    # PKCE with S256: the challenge sent is the hash of the verifier given for the code.
    asked, exchanged = provider.authorize_queries[-1], provider.token_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    digest = hashlib.sha256(exchanged["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == asked["code_challenge"]
    assert "openid" in asked["scope"].split()

    rows = audit_rows(oidc_app)
    signed_in = next(r for r in rows if r.action == "GET /sign-in/callback")
    assert (signed_in.outcome, signed_in.actor, signed_in.actor_org, signed_in.actor_roles) == (
        "allowed",
        "alice@gmp",
        "GMP",
        "recipient",
    )
    assert signed_in.target_type == "recipient_session" and signed_in.detail == "signed in (oidc)"
    # Nothing of the flow is written down: no code, no state.
    assert all("code=" not in (r.path or "") and "state=" not in (r.path or "") for r in rows)


@pytest.mark.parametrize(
    ("claims", "words", "detail"),
    [
        ({"roles": ["recipient"]}, "does not say which organisation", "oidc refused: the ID token has no org claim"),
        ({"org": "not a code!", "roles": ["recipient"]}, "could not be used", "oidc refused: org 'not a code!'"),
        (
            {"org": "GMP", "roles": []},
            "does not have the recipient role",
            "refused: no recipient role (oidc)",
        ),
        (
            {"org": "GMP", "roles": ["issuer", "recipient"]},
            "a role of the centre’s staff (issuer), but says you belong to GMP",
            "oidc refused: centre role issuer claimed for 'GMP'",
        ),
    ],
    ids=["no-org", "org-not-a-code", "no-recipient-role", "centre-role-for-a-force"],
)
def test_refused_sign_ins_get_a_clear_page_and_an_audit_entry(oidc_app, provider, claims, words, detail):
    sub = f"refused-{abs(hash(detail))}@example"
    provider.set_user(sub, **claims)
    browser = oidc_app.test_client()
    response = sign_in_through(provider, browser, sub)
    assert response.status_code == 403
    page = " ".join(text(response).split())
    assert "You cannot sign in" in page and words.replace("’", "’") in page.replace("'", "’")
    row = audit_rows(oidc_app)[-1]
    assert (row.action, row.status_code, row.outcome, row.detail) == ("GET /sign-in/callback", 403, "refused", detail)
    assert browser.get("/inbox").status_code == 303  # no session


def test_an_expired_id_token_is_refused(app, client):
    from services.dissemination import create_app

    expired, stop = start_provider(access_token_max_age=timedelta(minutes=-5))
    try:
        application = create_app({"settings": {"testing": True, **expired.settings()}})
        expired.set_user("late@gmp", **RECIPIENT)
        browser = application.test_client()
        response = sign_in_through(expired, browser, "late@gmp")
        assert response.status_code == 403
        assert "Your sign-in had expired" in text(response)
        row = audit_rows(application)[-1]
        assert row.outcome == "refused" and row.detail.startswith("oidc refused: Expired")
        application.extensions["database"].engine.dispose()
    finally:
        stop()


def test_a_callback_with_a_state_this_browser_did_not_start_is_refused(oidc_app, provider):
    provider.set_user("bob@gmp", **RECIPIENT)
    started = oidc_app.test_client()
    start = started.get("/sign-in/oidc")
    back = provider.authorize(location(start), "bob@gmp")
    # Another browser (an attacker's link carrying someone's code) has no such flow.
    other = oidc_app.test_client()
    response = other.get(callback_path(back))
    assert response.status_code == 400 and "started in another window" in text(response)
    assert audit_rows(oidc_app)[-1].detail == "oidc refused: state missing or not this browser's"
    # A flow is used once: the answer to it, replayed, is refused too.
    again = started.get("/sign-in/oidc")
    answer = callback_path(provider.authorize(location(again), "bob@gmp"))
    assert started.get(answer).status_code == 303
    assert oidc_app.test_client().get(answer).status_code == 400


def test_the_provider_refusing_is_a_page_not_an_error(oidc_app, provider):
    browser = oidc_app.test_client()
    start = browser.get("/sign-in/oidc")
    import requests

    denied = requests.post(location(start), data={"action": "deny"}, allow_redirects=False, timeout=10)
    response = browser.get(callback_path(denied.headers["Location"]))
    assert response.status_code == 400 and "You chose not to sign in" in text(response)


def production_settings() -> dict:
    strong = {name: name * 12 for name in ("jwt", "event", "form", "session", "webhooks", "scrape")}
    return {
        "testing": True,
        "app_env": "production",
        "jwt_secret": strong["jwt"],
        "event_secret": strong["event"],
        "form_secret": strong["form"],
        "session_secret": strong["session"],
        "webhook_secrets_key": strong["webhooks"],
        "metrics_scrape_token": strong["scrape"],
        "jwt_issuer": "https://idp.example",
        "jwt_audience": "nclcc",
        "oidc_issuer": "https://idp.example",
        "oidc_client_id": "nclcc-pages",
        "oidc_client_secret": "a-client-secret-from-the-provider",
    }


@pytest.mark.parametrize("service", ["dissemination", "metrics"])
def test_in_production_with_an_identity_provider_the_token_page_does_not_exist(app, token, service):
    import importlib

    production = importlib.import_module(f"services.{service}").create_app({"settings": production_settings()})
    prefix = "/dashboard" if service == "metrics" else ""
    browser = production.test_client()
    page = text(browser.get(f"{prefix}/sign-in"))
    assert "Sign in with your organisation’s account" in page and 'name="token"' not in page
    assert browser.post(f"{prefix}/sign-in", data={"token": raw_token(token)}).status_code == 404
    production.extensions["database"].engine.dispose()


def raw_token(token) -> str:
    return token("GMP", "recipient")["Authorization"].removeprefix("Bearer ")


def test_the_dashboard_signs_a_leader_in_with_the_same_provider(metrics_app, provider):
    from services.metrics import create_app

    dashboard = create_app({"settings": {"testing": True, **provider.settings()}})
    provider.set_user("chief@nclcc", org="NCLCC", roles=["leader"], clearance="OFFICIAL-SENSITIVE")
    browser = dashboard.test_client()
    assert "Sign in with your organisation’s account" in text(browser.get("/dashboard/sign-in"))
    start = browser.get("/dashboard/sign-in/oidc")
    assert start.status_code == 302
    back = provider.authorize(location(start), "chief@nclcc")
    response = browser.get(callback_path(back))
    assert response.status_code == 303 and location(response) == "/dashboard"
    assert browser.get("/dashboard").status_code == 200
    dashboard.extensions["database"].engine.dispose()


def test_oidc_settings_come_together(monkeypatch):
    from shared.settings import ConfigurationError, load_settings

    class Declared:
        name, port, subscribers, signs_webhooks = "dissemination", 5001, (), True

    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("OIDC_ISSUER", "https://idp.example/")
    with pytest.raises(ConfigurationError, match="OIDC_CLIENT_ID, OIDC_CLIENT_SECRET must be set"):
        load_settings("dissemination", [Declared()])
    monkeypatch.setenv("OIDC_CLIENT_ID", "pages")
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "secret-of-the-client")
    assert load_settings("dissemination", [Declared()]).oidc_issuer == "https://idp.example"


def test_a_provider_that_cannot_be_reached_is_a_page_not_an_error(app):
    from services.dissemination import create_app
    from shared.devredis import free_port

    gone = f"http://localhost:{free_port()}"
    application = create_app(
        {"settings": {"testing": True, "oidc_issuer": gone, "oidc_client_id": "x", "oidc_client_secret": "y"}}
    )
    response = application.test_client().get("/sign-in/oidc")
    assert response.status_code == 503 and "did not work" in text(response)
    row = audit_rows(application)[-1]
    assert row.outcome == "error" and row.detail.startswith("oidc error: ")
    application.extensions["database"].engine.dispose()
