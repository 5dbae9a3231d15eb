"""Bearer-token (JWT) verification, roles and clearance.

Development mints HS256 tokens with the shared secret (``make token``); production can set
``JWT_PUBLIC_KEY`` (PEM) or ``JWT_JWKS_URL`` to verify an identity provider's tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from flask import current_app, g, request
from flask_smorest import abort

from shared.settings import CLASSIFICATIONS, Settings

ROLES = ("issuer", "recipient", "leader", "admin")


@dataclass(frozen=True)
class Principal:
    sub: str
    org: str
    roles: frozenset[str]
    clearance: str

    def has_any(self, roles: Iterable[str]) -> bool:
        return bool(self.roles.intersection(roles))

    def cleared_for(self, classification: str) -> bool:
        return clearance_rank(classification) <= clearance_rank(self.clearance)


def clearance_rank(classification: str) -> int:
    try:
        return CLASSIFICATIONS.index(classification)
    except ValueError:
        return len(CLASSIFICATIONS)  # unknown markings are treated as above everything


def mint_token(
    settings: Settings,
    *,
    sub: str,
    org: str,
    roles: Iterable[str],
    clearance: str = "OFFICIAL-SENSITIVE",
    ttl: timedelta = timedelta(hours=12),
) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": sub,
        "org": org,
        "roles": sorted(set(roles)),
        "clearance": clearance,
        "iat": now,
        "exp": now + ttl,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


class TokenError(Exception):
    pass


_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        if settings.jwt_jwks_url:
            client = _jwks_clients.setdefault(settings.jwt_jwks_url, jwt.PyJWKClient(settings.jwt_jwks_url))
            key = client.get_signing_key_from_jwt(token).key
        else:
            key = settings.jwt_public_key or settings.jwt_secret
        claims = jwt.decode(
            token,
            key,
            algorithms=settings.jwt_algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise TokenError("token has expired") from error
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
        raise TokenError(f"token is not valid: {error}") from error
    roles = claims.get("roles") or []
    if isinstance(roles, str):
        roles = roles.split(",")
    org = claims.get("org")
    clearance = claims.get("clearance") or "OFFICIAL"
    if not isinstance(org, str) or not org:
        raise TokenError("token has no org claim")
    if clearance not in CLASSIFICATIONS:
        raise TokenError(f"unknown clearance {clearance!r}")
    return Principal(sub=str(claims["sub"]), org=org, roles=frozenset(map(str, roles)), clearance=clearance)


def current_principal() -> Principal | None:
    """The caller, verified once per request; None when no (valid) token was sent."""
    if "principal" not in g:
        g.principal = None
        g.token_error = None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                g.principal = verify_token(current_app.extensions["settings"], token.strip())
            except TokenError as error:
                g.token_error = str(error)
        elif header:
            g.token_error = "Authorization header must be 'Bearer <token>'"
        else:
            g.token_error = "no bearer token sent"
    return g.principal


def require(*roles: str) -> Callable:
    """Require a valid token, and one of ``roles`` when any are given (401 / 403 otherwise)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal is None:
                abort(401, message=f"Authentication required: {g.token_error}.")
            if roles and not principal.has_any(roles):
                abort(403, message=f"This needs one of the roles: {', '.join(roles)}.")
            return view(*args, **kwargs)

        # flask-smorest documents the security requirement and the error answers from this.
        wrapper._required_roles = roles  # type: ignore[attr-defined]
        return wrapper

    return decorator
