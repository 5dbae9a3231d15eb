"""Bearer-token (JWT) verification, roles and clearance: who the caller is, in one place.

Development mints HS256 tokens with ``JWT_SECRET`` (``make token``); production can set
``JWT_PUBLIC_KEY`` (PEM) or ``JWT_JWKS_URL`` to verify an identity provider's RS256/ES256 tokens
(keys picked by ``kid``, fetched again when an unknown ``kid`` appears and every 5 minutes, so keys
rotate in and out without a restart).

The centre's roles (issuer, admin, leader) count only in a token whose ``org`` is the centre
(``CENTRE_ORG``): a force's token that claims ``admin`` is judged on its other roles.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cachetools import TTLCache
from flask import current_app, g, request
from flask_smorest import abort

from shared.settings import Settings
from shared.vocabulary import CENTRE_ROLES, CLASSIFICATIONS, LEADER_ROLES, ROLES

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30
# Who acted is kept in 200-character columns; an organisation is its directory code.
MAX_SUB_LENGTH = 200
ORG_CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,15}")
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


@dataclass(frozen=True)
class Principal:
    """A verified caller. Built by ``principal_from_claims``, which drops centre roles from a
    token whose organisation is not the centre."""

    sub: str
    org: str
    roles: frozenset[str]
    clearance: str

    def has_any(self, roles: Iterable[str]) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_centre(self) -> bool:
        """Centre staff: reaches every organisation's packages, returns and figures."""
        return self.has_any(CENTRE_ROLES)

    @property
    def is_leader(self) -> bool:
        return self.has_any(LEADER_ROLES)

    def cleared_for(self, classification: str) -> bool:
        return clearance_rank(classification) <= clearance_rank(self.clearance)

    @property
    def allowed_classifications(self) -> list[str]:
        """The markings this caller may see, for ``column.in_(...)`` filters."""
        return [marking for marking in CLASSIFICATIONS if self.cleared_for(marking)]


def principal_from_claims(settings: Settings, *, sub: str, org: str, roles: Iterable[str], clearance: str) -> Principal:
    # Organisation codes are upper case everywhere (the directory, disseminations, returns).
    org = org.strip().upper()
    granted = frozenset(str(role) for role in roles)
    if org != settings.centre_org:
        granted -= CENTRE_ROLES
    return Principal(sub=sub, org=org, roles=granted, clearance=clearance)


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
    if not settings.jwt_secret:
        raise TokenError("JWT_SECRET is not set: tokens come from the identity provider")
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
    """The token is refused. ``str(error)`` is safe to show the caller; ``reason`` (which may
    carry the library's words) goes only to the audit log."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class JwksKeys:
    """An identity provider's signing keys, cached, fetched again for an unknown ``kid`` at most
    every ``REFRESH_AFTER_SECONDS`` (so a stream of made-up kids cannot hammer the provider), and
    every ``MAX_AGE_SECONDS`` whatever the kid."""

    REFRESH_AFTER_SECONDS = 10
    # Fetched again at least this often even when every kid is known: a key the provider
    # withdrew (rotated out, or compromised) stops counting within this time, not at a restart.
    MAX_AGE_SECONDS = 300

    def __init__(self, url: str):
        self.client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=10)
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = 0.0
        self.lock = threading.Lock()

    def key_for(self, kid: str | None):
        if kid is None:
            raise TokenError("token is not valid", "token header has no kid")
        with self.lock:
            since = time.monotonic() - self.fetched_at
            wanted = kid not in self.keys or since >= self.MAX_AGE_SECONDS
            if wanted and since >= self.REFRESH_AFTER_SECONDS:
                self.fetched_at = time.monotonic()
                try:
                    self.keys = {key.key_id: key for key in self.client.get_signing_keys(refresh=True) if key.key_id}
                except jwt.PyJWKClientError as error:
                    # The keys held are kept: an unreachable provider does not refuse every caller.
                    log.warning("could not fetch the identity provider's keys: %s", error)
            key = self.keys.get(kid)
        if key is None:
            raise TokenError("token is not valid", f"no signing key with kid {kid!r}")
        return key.key


_jwks: dict[str, JwksKeys] = {}


def _verification_key(settings: Settings, header: dict):
    algorithm = header.get("alg")
    if algorithm not in settings.jwt_algorithms:
        raise TokenError("token is not valid", f"algorithm {algorithm!r} is not accepted")
    if algorithm in HMAC_ALGORITHMS:
        if not settings.jwt_secret:
            raise TokenError("token is not valid", "HMAC tokens are not accepted here")
        return settings.jwt_secret
    if settings.jwt_jwks_url:
        keys = _jwks.setdefault(settings.jwt_jwks_url, JwksKeys(settings.jwt_jwks_url))
        return keys.key_for(header.get("kid"))
    if settings.jwt_public_key:
        return settings.jwt_public_key
    raise TokenError("token is not valid", f"no key configured for {algorithm}")


def verify_token(settings: Settings, token: str) -> Principal:
    return verified_token(settings, token)[0]


def verified_token(settings: Settings, token: str) -> tuple[Principal, float]:
    """The principal a token names and when it expires (``exp``); TokenError if it is refused."""
    required = ["sub", "exp", "iat"]
    if settings.production:
        required += ["iss", "aud"]
    try:
        header = jwt.get_unverified_header(token)
        key = _verification_key(settings, header)
        claims = jwt.decode(
            token,
            key,
            algorithms=[header["alg"]],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
    except TokenError:
        raise
    except jwt.ExpiredSignatureError as error:
        raise TokenError("token has expired") from error
    except Exception as error:  # noqa: BLE001 - any fault in a presented token is the caller's, never a 500
        raise TokenError("token is not valid", f"{type(error).__name__}: {error}") from error
    issued_at, expires_at = claims.get("iat"), claims.get("exp")
    if not isinstance(issued_at, int | float) or not isinstance(expires_at, int | float):
        raise TokenError("token is not valid", "iat and exp must be numbers")
    if expires_at - issued_at > settings.jwt_max_lifetime:
        raise TokenError(
            "token lives too long",
            f"exp - iat is {expires_at - issued_at:.0f} s, more than JWT_MAX_LIFETIME {settings.jwt_max_lifetime} s",
        )
    return principal_from_verified_claims(settings, claims), float(expires_at)


class VerifiedTokens:
    """Tokens this app accepted lately, with whom they name: a client sends the same token with
    every request, and checking it again (its header, signature and claims: 9% of a metrics
    read's CPU in py-spy) gave the same answer each time. The key is the whole token, signature
    included, so only that very token is answered from here; its expiry is checked on every
    use, with ``jwt.decode``'s leeway. An entry is forgotten ``SECONDS`` after it was checked
    (and at most ``KEPT`` are kept), so the token is checked in full again at least that often.
    A refused token is never kept: it is checked, and its reason recorded, every time. Tokens
    are kept for the settings they were checked under: other settings start afresh."""

    SECONDS = 60
    KEPT = 4096

    def __init__(self, now: Callable[[], float] = time.time, timer: Callable[[], float] = time.monotonic) -> None:
        self.now = now  # for the tokens' expiry, as jwt.decode reads it
        # For how long an entry is kept: a wall clock stepped back must not keep one longer.
        self.entries: TTLCache = TTLCache(maxsize=self.KEPT, ttl=self.SECONDS, timer=timer)
        self.lock = threading.Lock()  # gunicorn's threads share it; TTLCache is not thread-safe
        self.settings: Settings | None = None

    def principal(self, settings: Settings, token: str) -> Principal:
        with self.lock:
            if settings is not self.settings:
                self.entries.clear()
                self.settings = settings
            kept = self.entries.get(token)
        if kept is None:
            kept = verified_token(settings, token)
            with self.lock:
                if settings is self.settings:  # not checked under settings since replaced
                    self.entries[token] = kept
        principal, expires_at = kept
        # jwt.decode's own test, in whole seconds: refused once exp <= now - leeway.
        if int(expires_at) <= int(self.now()) - LEEWAY_SECONDS:
            raise TokenError("token has expired")
        return principal


def principal_from_verified_claims(settings: Settings, claims: dict) -> Principal:
    """The principal that verified claims (an API token's, or an ID token's from OpenID Connect
    sign-in) name: ``sub``, ``org`` (a directory code), ``roles`` (a list, or a comma-separated
    string), ``clearance`` (OFFICIAL when absent). Raises TokenError when one is unusable."""
    roles = claims.get("roles") or []
    if isinstance(roles, str):
        roles = roles.split(",")
    if not isinstance(roles, list):
        raise TokenError("token is not valid", "roles must be a list")
    org = claims.get("org")
    clearance = claims.get("clearance") or "OFFICIAL"
    if not isinstance(org, str) or not org:
        raise TokenError("token has no org claim")
    if not ORG_CODE.fullmatch(org.strip().upper()):
        raise TokenError("token has an org that is not an organisation code", f"org {org[:40]!r}")
    if clearance not in CLASSIFICATIONS:
        raise TokenError("token has an unknown clearance")
    sub = str(claims.get("sub") or "")
    if not 1 <= len(sub) <= MAX_SUB_LENGTH or not sub.isprintable():
        raise TokenError("token has a sub that is empty, too long or unprintable")
    # Roles this system does not know are no roles here (and cannot overflow the audit log).
    known_roles = [role for role in roles if role in ROLES]
    return principal_from_claims(settings, sub=sub, org=org, roles=known_roles, clearance=clearance)


def current_principal() -> Principal | None:
    """The caller, verified once per request; None when no (valid) token was sent."""
    if "principal" not in g:
        g.principal = None
        g.token_error = None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                tokens: VerifiedTokens = current_app.extensions["verified_tokens"]  # shared.service
                g.principal = tokens.principal(current_app.extensions["settings"], token.strip())
            except TokenError as error:
                g.token_error = str(error)
                # The audit log keeps the real reason; the caller gets the plain one.
                g.audit_detail = f"token refused: {error.reason}"
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
            elif roles and not principal.has_any(roles):
                abort(403, message=f"This needs one of the roles: {', '.join(roles)}.")
            return view(*args, **kwargs)

        # flask-smorest documents the security requirement and the error answers from this.
        wrapper._required_roles = roles  # type: ignore[attr-defined]
        return wrapper

    return decorator
