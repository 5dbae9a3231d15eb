"""Signing people in to the web pages with the organisation's identity provider: OpenID Connect,
authorization code flow with PKCE (S256), by Authlib's Flask client.

Configured by ``OIDC_ISSUER`` (the provider's metadata is read from
``<issuer>/.well-known/openid-configuration``), ``OIDC_CLIENT_ID`` and ``OIDC_CLIENT_SECRET``.
Authlib makes the ``state``, the ``nonce`` and the PKCE verifier for each sign-in and checks
them on the way back; the ID token's signature (the provider's published keys), issuer,
audience, expiry and nonce are verified. What the flow keeps between the redirect and the
callback (the verifier, the nonce) waits in Redis, not in the browser's cookie, which holds only
the state's key; it lapses after 10 minutes.

The ID token's claims name the same principal as an API token (``shared.auth``):
``sub``, ``org`` (an organisation code from the directory), ``roles`` (a list or a
comma-separated string) and ``clearance`` (OFFICIAL when absent). A sign-in is refused when the
token has expired, has no usable ``org``, or claims a centre role (issuer, admin, leader) for an
organisation other than the centre (an identity provider set up wrongly is not trusted for the
rest either). Which roles may enter which pages is each page's own rule.
"""

from __future__ import annotations

from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app

from shared.audit import audit_route_only
from shared.auth import Principal, TokenError, principal_from_verified_claims
from shared.queue import redis_connection
from shared.settings import Settings
from shared.vocabulary import CENTRE_ROLES
from shared.web_sessions import SignInRefused

# What the flow keeps between the redirect to the provider and the way back.
FLOW_SECONDS = 600
# Clock difference allowed with the provider when checking the ID token's times.
LEEWAY_SECONDS = 30
SCOPES = "openid profile email"


def oidc_configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer)


class _RedisFlowStore:
    """Authlib's cache for a flow's state: get, set and delete, in Redis."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    @staticmethod
    def _redis():
        return redis_connection(current_app.extensions["settings"].redis_url)

    def get(self, key: str):
        return self._redis().get(self.prefix + key)

    def set(self, key: str, value: str, expires: int | None = None) -> None:
        self._redis().set(self.prefix + key, value, ex=min(expires or FLOW_SECONDS, FLOW_SECONDS))

    def delete(self, key: str) -> None:
        self._redis().delete(self.prefix + key)


class OidcSignIn:
    """One app's client of the identity provider; ``name`` keeps its flows apart in Redis."""

    def __init__(self, app: Flask, name: str):
        settings: Settings = app.extensions["settings"]
        assert settings.oidc_issuer, "OIDC_ISSUER is not set"
        self.issuer = settings.oidc_issuer
        self.oauth = OAuth(app, cache=_RedisFlowStore(f"{settings.service}:{name}-oidc:"))
        self.client = self.oauth.register(
            name=f"{name}_idp",
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            client_kwargs={"scope": SCOPES, "code_challenge_method": "S256", "timeout": 10},
        )
        self.client.framework.expires_in = FLOW_SECONDS

    def redirect(self, callback_path: str):
        """The redirect to the provider's sign-in page (state, nonce and PKCE challenge in it),
        which sends the person back to ``callback_path`` at this service's public address (as
        registered with the provider; not the address a proxy forwarded to). Raises
        SignInRefused when the provider's metadata cannot be read."""
        settings: Settings = current_app.extensions["settings"]
        try:
            return self.client.authorize_redirect(settings.public_urls[settings.service] + callback_path)
        except Exception as error:  # noqa: BLE001 - the provider is down or misconfigured: a page, not a 500
            raise _refusal(error) from error

    def finish(self) -> Principal:
        """The callback: the code exchanged, the ID token verified, the principal it names.
        Raises SignInRefused, never anything else. (The session that follows lasts its 8 hours:
        an ID token's expiry bounds when it may be used to sign in, not the session.)"""
        audit_route_only()  # the callback's query carries the authorization code
        try:
            token = self.client.authorize_access_token(leeway=LEEWAY_SECONDS)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the person gets a page, not a 500
            raise _refusal(error) from error
        claims = token.get("userinfo")
        if not claims:
            raise SignInRefused(
                "provider", "The identity provider sent no ID token.", "oidc refused: no ID token in the answer"
            )
        return principal_from_id_token(current_app.extensions["settings"], dict(claims))


def principal_from_id_token(settings: Settings, claims: dict) -> Principal:
    """The principal an ID token's verified claims name; SignInRefused when they name none."""
    org = claims.get("org")
    if not isinstance(org, str) or not org.strip():
        raise SignInRefused(
            "no_org",
            "Your account does not say which organisation you belong to.",
            "oidc refused: the ID token has no org claim",
        )
    roles = claims.get("roles") or []
    claimed = set(roles.split(",") if isinstance(roles, str) else roles if isinstance(roles, list) else [])
    centre_roles = sorted(claimed & CENTRE_ROLES)
    if centre_roles and org.strip().upper() != settings.centre_org:
        raise SignInRefused(
            "centre_role",
            f"Your account gives you a role of the centre's staff ({', '.join(centre_roles)}), but says you belong "
            f"to {org.strip().upper()[:16]}. Only {settings.centre_org} staff may hold it.",
            f"oidc refused: centre role {', '.join(centre_roles)} claimed for {org.strip()[:40]!r}",
        )
    try:
        return principal_from_verified_claims(settings, claims)
    except TokenError as error:
        raise SignInRefused(
            "invalid",
            "Your account’s details could not be used here: ask your administrator to check them.",
            f"oidc refused: {error.reason}",
        ) from error


def _refusal(error: Exception) -> SignInRefused:
    name = type(error).__name__
    if "Expired" in name:
        return SignInRefused(
            "expired", "Your sign-in had expired by the time it reached us.", f"oidc refused: {name}: {error}"
        )
    if "MismatchingState" in name:
        return SignInRefused(
            "state",
            "This sign-in was started in another window, or too long ago.",
            "oidc refused: state missing or not this browser's",
        )
    if name == "OAuthError" and getattr(error, "error", None) == "access_denied":
        return SignInRefused("denied", "You did not agree to sign in.", "oidc refused: access_denied at the provider")
    return SignInRefused(
        "provider", "Signing in with your organisation's account did not work.", f"oidc error: {name}: {error}"[:500]
    )
