"""Finding 11: tokens from an identity provider could not work (no ``cryptography``), had no
lifetime cap, and ``aud``/``iss`` were optional; a mixed ``JWT_ALGORITHMS`` gave a 500 and 401s
echoed the library's reasons. A real JWKS is served on loopback here, with RS256 keys that
rotate."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from services import settings_for
from shared.auth import JwksKeys, TokenError, _jwks, mint_token, verify_token
from shared.devredis import free_port

ISSUER = "https://idp.test.invalid/realms/police"
AUDIENCE = "nclcc-outcome-feedback"


class IdentityProvider:
    """Serves /jwks on loopback with the keys it holds; signs tokens with any of them."""

    def __init__(self):
        self.keys: dict[str, object] = {}
        self.fetches = 0
        self.port = free_port()

        @Request.application
        def app(request):
            self.fetches += 1
            keys = []
            for kid, key in self.keys.items():
                if isinstance(key, rsa.RSAPrivateKey):
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                    jwk["alg"] = "RS256"
                else:
                    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
                    jwk["alg"] = "ES256"
                keys.append({**jwk, "kid": kid, "use": "sig"})
            return Response(json.dumps({"keys": keys}), content_type="application/json")

        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks"

    def add_key(self, kind: str = "rsa") -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        return kid

    def token(self, kid: str, *, lifetime: int = 3600, **claims) -> str:
        now = int(time.time())
        body = {
            "sub": "officer@gmp",
            "org": "GMP",
            "roles": ["recipient"],
            "clearance": "OFFICIAL",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + lifetime,
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not None}
        key = self.keys[kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp(monkeypatch):
    provider = IdentityProvider()
    # Each test starts with an empty key cache that may fetch again at once.
    monkeypatch.setattr(JwksKeys, "REFRESH_AFTER_SECONDS", 0)
    yield provider
    provider.stop()


def idp_settings(provider: IdentityProvider, **changes):
    settings = settings_for("dissemination")
    values = dict(
        jwt_jwks_url=provider.jwks_url,
        jwt_secret=None,
        jwt_algorithms=["RS256", "ES256"],
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        app_env="production",
    )
    return replace(settings, **{**values, **changes})


def test_rs256_and_es256_tokens_from_the_provider_are_accepted(idp):
    settings = idp_settings(idp)
    principal = verify_token(settings, idp.token(idp.add_key("rsa")))
    assert (principal.sub, principal.org, principal.roles) == ("officer@gmp", "GMP", frozenset({"recipient"}))
    assert verify_token(settings, idp.token(idp.add_key("ec"))).org == "GMP"


def test_a_key_rotated_in_is_fetched_without_restart(idp):
    settings = idp_settings(idp)
    first = idp.add_key()
    verify_token(settings, idp.token(first))
    fetches = idp.fetches
    verify_token(settings, idp.token(first))
    assert idp.fetches == fetches, "known keys are cached"
    second = idp.add_key()
    del idp.keys[first]
    assert verify_token(settings, idp.token(second)).sub == "officer@gmp"
    assert idp.fetches == fetches + 1


def test_a_key_the_provider_withdrew_stops_counting_within_five_minutes(idp):
    settings = idp_settings(idp)
    withdrawn, kept = idp.add_key(), idp.add_key()
    token = idp.token(withdrawn)
    assert verify_token(settings, token).org == "GMP"
    del idp.keys[withdrawn]
    fetches = idp.fetches
    assert verify_token(settings, token).org == "GMP", "the keys fetched moments ago still hold"
    assert idp.fetches == fetches
    _jwks[settings.jwt_jwks_url].fetched_at -= JwksKeys.MAX_AGE_SECONDS  # five minutes on
    with pytest.raises(TokenError, match="token is not valid"):
        verify_token(settings, token)
    assert idp.fetches == fetches + 1
    assert verify_token(settings, idp.token(kept)).org == "GMP"
    assert idp.fetches == fetches + 1


def test_unknown_keys_are_refused_and_cannot_hammer_the_provider(idp, monkeypatch):
    settings = idp_settings(idp)
    idp.add_key()
    stranger = IdentityProvider()
    try:
        with pytest.raises(TokenError, match="token is not valid"):
            verify_token(settings, stranger.token(stranger.add_key()))
        monkeypatch.setattr(JwksKeys, "REFRESH_AFTER_SECONDS", 60)
        fetches = idp.fetches
        for _ in range(20):
            with pytest.raises(TokenError):
                verify_token(settings, stranger.token(stranger.add_key()))
        assert idp.fetches <= fetches + 1
    finally:
        stranger.stop()


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "some-other-system"},
        {"iss": "https://evil.invalid"},
        {"aud": None},
        {"iss": None},
    ],
)
def test_audience_and_issuer_are_required_and_checked(idp, claims):
    settings = idp_settings(idp)
    with pytest.raises(TokenError):
        verify_token(settings, idp.token(idp.add_key(), **claims))


def test_tokens_living_longer_than_the_cap_are_refused(idp):
    settings = idp_settings(idp, jwt_max_lifetime=12 * 3600)
    kid = idp.add_key()
    assert verify_token(settings, idp.token(kid, lifetime=12 * 3600)).org == "GMP"
    with pytest.raises(TokenError, match="lives too long"):
        verify_token(settings, idp.token(kid, lifetime=12 * 3600 + 60))
    with pytest.raises(TokenError):
        verify_token(settings, idp.token(kid, iat=None))


def test_thirty_seconds_of_clock_skew_are_allowed(idp):
    settings = idp_settings(idp)
    kid = idp.add_key()
    now = int(time.time())
    assert verify_token(settings, idp.token(kid, iat=now - 3600, exp=now - 20)).org == "GMP"
    with pytest.raises(TokenError, match="expired"):
        verify_token(settings, idp.token(kid, iat=now - 3600, exp=now - 40))


def test_an_hs256_token_signed_with_the_public_key_is_refused(idp):
    """The classic algorithm confusion: HS256 with the provider's public key as the secret."""
    from cryptography.hazmat.primitives import serialization

    settings = idp_settings(idp, jwt_algorithms=["RS256", "HS256"], jwt_secret="the-real-hmac-secret-" + "z" * 20)
    kid = idp.add_key()
    public_pem = (
        idp.keys[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import base64
    import hashlib
    import hmac

    now = int(time.time())

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(
        json.dumps(
            {
                "sub": "x",
                "org": "NCLCC",
                "roles": ["admin"],
                "iss": ISSUER,
                "aud": AUDIENCE,
                "iat": now,
                "exp": now + 60,
            }
        ).encode()
    )
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    forged = f"{header}.{payload}.{signature}"
    with pytest.raises(TokenError, match="token is not valid"):
        verify_token(settings, forged)
    # The same claims in an RS256 token from the provider are accepted (but lose the centre roles
    # only if the org is not the centre: here it is the centre, so admin stays).
    assert verify_token(settings, idp.token(kid, org="NCLCC", roles=["admin"])).is_centre


def test_mixed_algorithms_and_a_mismatched_token_give_401_not_500(app, client, token):
    """JWT_ALGORITHMS listing RS256 and HS256 with a public key: an HS token is checked against
    the HMAC secret and an RS token against the key; a token of an unlisted kind is a 401."""
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = replace(app.extensions["settings"], jwt_public_key=pem, jwt_algorithms=["RS256", "HS256"])
    app.extensions["settings"] = settings
    now = int(time.time())
    claims = {"sub": "a@gmp", "org": "GMP", "roles": ["recipient"], "iat": now, "exp": now + 60}
    assert client.get("/api/v1/inbox", headers=token("GMP", "recipient")).status_code == 200
    rs_token = jwt.encode(claims, key, algorithm="RS256")
    assert client.get("/api/v1/inbox", headers={"Authorization": f"Bearer {rs_token}"}).status_code == 200
    es_token = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    for bad in (es_token, "not.a.token", "a.b", "eyJhbGciOiJub25lIn0.e30.", rs_token[:-8] + "AAAAAAAA"):
        response = client.get("/api/v1/inbox", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
        assert response.get_json()["message"].startswith("Authentication required: token")


def test_401_messages_do_not_echo_the_library(client, token, app):
    good = token("GMP", "recipient")["Authorization"]
    response = client.get("/api/v1/inbox", headers={"Authorization": good[:-3] + "abc"})
    assert response.status_code == 401
    assert response.get_json()["message"] == "Authentication required: token is not valid."
    # ...while the audit log keeps the reason for whoever investigates.
    from sqlalchemy import select

    models = app.extensions["service"].models
    with app.app_context():
        from shared.db import get_session

        entry = get_session().scalars(select(models.AuditEntry).order_by(models.AuditEntry.id.desc())).first()
    assert entry.status_code == 401 and "Signature verification failed" in entry.detail


def test_our_own_minted_tokens_carry_issuer_and_audience_when_set(app):
    settings = replace(app.extensions["settings"], jwt_issuer=ISSUER, jwt_audience=AUDIENCE, app_env="production")
    principal = verify_token(settings, mint_token(settings, sub="s", org="GMP", roles=["recipient"]))
    assert principal.org == "GMP"


def test_organisation_codes_are_compared_in_upper_case(app):
    settings = app.extensions["settings"]
    assert verify_token(settings, mint_token(settings, sub="s", org=" gmp", roles=["recipient"])).org == "GMP"
    centre = verify_token(settings, mint_token(settings, sub="s", org="nclcc", roles=["admin"]))
    assert centre.org == "NCLCC" and centre.is_centre
    force = verify_token(settings, mint_token(settings, sub="s", org="NCLCC-GMP", roles=["admin", "recipient"]))
    assert not force.is_centre and force.roles == frozenset({"recipient"})


@pytest.mark.parametrize(
    "claims, problem",
    [
        ({"sub": "x" * 201}, "sub"),
        ({"sub": "a\x00b"}, "sub"),
        ({"sub": ""}, "sub"),
        ({"org": "G" * 17}, "org"),
        ({"org": "GMP; DROP"}, "org"),
        ({"org": "GMP\x00"}, "org"),
    ],
)
def test_claims_that_could_not_be_recorded_are_refused(app, client, claims, problem):
    """Finding from beyond the list: a 300-character ``sub`` or a long ``org`` reached 200- and
    16-character columns and failed on PostgreSQL (500, and no audit entry)."""
    now = int(time.time())
    body = {"sub": "someone", "org": "GMP", "roles": ["recipient"], "iat": now, "exp": now + 60, **claims}
    value = jwt.encode(body, app.extensions["settings"].jwt_secret, algorithm="HS256")
    response = client.get("/api/v1/inbox", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 401
    assert problem in response.get_json()["message"]


def test_unknown_roles_are_dropped(app):
    settings = app.extensions["settings"]
    principal = verify_token(settings, mint_token(settings, sub="s", org="GMP", roles=["recipient", "x" * 300]))
    assert principal.roles == frozenset({"recipient"})
