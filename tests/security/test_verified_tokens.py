"""A token accepted once is not checked in full again on every request (``VerifiedTokens``),
and what that must not change: an expired, altered or foreign token is still refused, and the
check comes back in full after a minute or when the settings change."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest

from shared import auth
from shared.auth import TokenError, VerifiedTokens, mint_token


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks(monkeypatch):
    """Counts the full checks (header, signature, claims) of tokens."""
    counted = []
    real = auth.verified_token

    def counting(settings, token):
        counted.append(token)
        return real(settings, token)

    monkeypatch.setattr(auth, "verified_token", counting)
    return counted


def test_a_token_is_checked_in_full_once_a_minute_not_on_every_request(app, checks):
    settings, clock = app.extensions["settings"], Clock()
    tokens = VerifiedTokens(now=clock, timer=clock)
    token = mint_token(settings, sub="a@gmp", org="GMP", roles=["recipient"])
    for _ in range(5):
        assert tokens.principal(settings, token).org == "GMP"
    assert len(checks) == 1
    clock.now += VerifiedTokens.SECONDS + 1
    assert tokens.principal(settings, token).sub == "a@gmp"
    assert len(checks) == 2


def test_a_kept_token_is_refused_once_it_expires(app):
    settings, clock = app.extensions["settings"], Clock()
    tokens = VerifiedTokens(now=clock, timer=clock)
    token = mint_token(settings, sub="a@gmp", org="GMP", roles=["recipient"], ttl=timedelta(seconds=20))
    assert tokens.principal(settings, token).org == "GMP"
    expires_at = int(auth.verified_token(settings, token)[1])
    clock.now = expires_at + auth.LEEWAY_SECONDS - 1  # within the leeway jwt.decode allows
    assert tokens.principal(settings, token).org == "GMP"
    clock.now = expires_at + auth.LEEWAY_SECONDS  # where jwt.decode refuses it
    with pytest.raises(TokenError, match="token has expired"):
        tokens.principal(settings, token)


def test_an_altered_token_is_checked_and_refused_however_like_a_kept_one(app, checks):
    settings = app.extensions["settings"]
    tokens = VerifiedTokens()
    token = mint_token(settings, sub="a@gmp", org="GMP", roles=["recipient"])
    tokens.principal(settings, token)
    header, claims, signature = token.split(".")
    admin_claims = mint_token(settings, sub="a@gmp", org="NCLCC", roles=["admin"]).split(".")[1]
    for altered in (f"{header}.{admin_claims}.{signature}", f"{header}.{claims}.{signature[:-4]}AAAA"):
        with pytest.raises(TokenError, match="not valid"):
            tokens.principal(settings, altered)
    assert len(checks) == 3  # the first, then each altered one, in full
    # A refused token is never kept: refused again, with its reason, every time.
    with pytest.raises(TokenError):
        tokens.principal(settings, f"{header}.{admin_claims}.{signature}")
    assert len(checks) == 4


def test_other_settings_check_again_what_the_old_ones_accepted(app):
    settings = app.extensions["settings"]
    tokens = VerifiedTokens()
    token = mint_token(settings, sub="a@gmp", org="GMP", roles=["recipient"])
    assert tokens.principal(settings, token).org == "GMP"
    rotated = replace(settings, jwt_secret="another-secret-of-at-least-32-characters!")
    with pytest.raises(TokenError, match="not valid"):
        tokens.principal(rotated, token)


def test_requests_with_the_same_token_are_answered_and_audited_as_before(app, client, token, checks):
    headers = token("GMP", "recipient")
    for _ in range(3):
        assert client.get("/api/v1/inbox", headers=headers).status_code == 200
    assert len(checks) == 1
    refused = {"Authorization": headers["Authorization"][:-3] + "abc"}
    for _ in range(2):
        response = client.get("/api/v1/inbox", headers=refused)
        assert response.status_code == 401
        assert response.get_json()["message"] == "Authentication required: token is not valid."
    assert len(checks) == 3
    from sqlalchemy import select

    models = app.extensions["service"].models
    with app.app_context():
        from shared.db import get_session

        entries = get_session().scalars(select(models.AuditEntry).order_by(models.AuditEntry.id)).all()
    assert [entry.status_code for entry in entries[-5:]] == [200, 200, 200, 401, 401]
    assert all(entry.actor == "recipient@gmp" for entry in entries[-5:-2])
    assert all("Signature verification failed" in entry.detail for entry in entries[-2:])
