"""Server-side sessions for the web pages people sign in to (the leadership dashboard, the
recipients' pages): one implementation, so each rule below holds for both.

A person signs in once -- with the organisation's identity provider (``shared.oidc``) or, where
allowed, by pasting a bearer token -- and what was verified is kept in Redis under a random
session id: the principal (``sub``, ``org``, ``roles``, ``clearance``) and the moment the session
must end (the token's own expiry or 8 hours after signing in, whichever comes first). Only that
id goes in Flask's signed session cookie (HttpOnly, Secure behind https). Every request checks
the record again (its end, and who may enter); signing out deletes it. Redis keeps a digest of
the id, and the audit log names a session by a shorter digest, so neither a copy of Redis nor of
the audit log hands out usable cookies.

Sign-ins, refusals and sign-outs are written to the audit log by the pages (``shared.audit``).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import jwt
from flask import Flask, current_app, session

from shared.audit import audit_target
from shared.auth import Principal, TokenError, verify_token
from shared.queue import redis_connection
from shared.settings import Settings

SESSION_LIFETIME = timedelta(hours=8)
# Tokens longer than any identity provider issues are refused before verifying them.
TOKEN_MAX_LENGTH = 8000


class SignInRefused(Exception):
    """A sign-in that is refused. ``kind`` picks the words the person reads (``expired``,
    ``invalid``, ``no_org``, ``no_role``, ``centre_role``, ``provider``, ``state``);
    ``str(error)`` is safe to show; ``reason`` goes only to the audit log."""

    def __init__(self, kind: str, message: str, reason: str):
        super().__init__(message)
        self.kind = kind
        self.reason = reason

    @property
    def status(self) -> int:
        """The answer's status code: the person's own doing, the provider's, or who they are."""
        if self.kind in ("state", "denied"):
            return 400
        if self.kind == "provider":
            return 503
        return 403


def configure_cookie(app: Flask, *, name: str, path: str, public_url: str, same_site: str) -> None:
    """The app's session cookie: its own name and path (on one development host the services'
    cookies would otherwise overwrite each other), never readable by scripts, https-only behind
    https (so the pages also work on http://127.0.0.1 in development)."""
    app.config["SESSION_COOKIE_NAME"] = name
    app.config["SESSION_COOKIE_PATH"] = path
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = same_site
    app.config["SESSION_COOKIE_SECURE"] = public_url.lower().startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    # The JSON API authenticates by bearer token and has no CSRF token: check only where asked.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # A sign-out button on a page left open all day still works.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", int(SESSION_LIFETIME.total_seconds()))


def session_fingerprint(session_id: str) -> str:
    """What the audit log names a session by (never the id itself, which is a credential)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def verify_pasted_token(settings: Settings, pasted: str) -> tuple[Principal, float]:
    """A bearer token pasted into a sign-in page: its principal and expiry (epoch seconds)."""
    token = pasted.strip()
    if token[:7].lower() == "bearer ":  # the whole Authorization header value, pasted
        token = token[7:].strip()
    if not token:
        raise SignInRefused("empty", "Paste your access token into the box.", "invalid: no token pasted")
    if len(token) > TOKEN_MAX_LENGTH:
        raise SignInRefused(
            "too_long",
            "That token is too long. Ask for a shorter one.",
            f"token refused: {len(token)} characters, more than {TOKEN_MAX_LENGTH}",
        )
    try:
        principal = verify_token(settings, token)
    except TokenError as error:
        if isinstance(error.__cause__, jwt.ExpiredSignatureError):
            raise SignInRefused("expired", str(error), f"token refused: {error.reason}") from error
        raise SignInRefused("invalid", str(error), f"token refused: {error.reason}") from error
    # verify_token checked the signature and that exp is a number.
    expires_at = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    return principal, expires_at


@dataclass
class WebSessions:
    """The sessions of one set of pages. ``name`` names them in Redis, in the cookie and in the
    audit log; ``may_enter`` is asked on every request; ``clock`` gives epoch seconds (the tests
    move it)."""

    name: str
    may_enter: Callable[[Principal], bool]
    clock: Callable[[], float] = field(default=time.time)
    lifetime: timedelta = SESSION_LIFETIME

    @property
    def cookie_key(self) -> str:
        return f"{self.name}_session"

    def _store_key(self, session_id: str) -> str:
        service = current_app.extensions["settings"].service
        return f"{service}:{self.name}-session:" + hashlib.sha256(session_id.encode()).hexdigest()

    @staticmethod
    def _redis():
        return redis_connection(current_app.extensions["settings"].redis_url)

    def start(self, principal: Principal, expires_at: float | None, via: str = "token") -> str:
        """Keep the verified principal server-side; the id returned goes in the cookie. The
        session ends at ``expires_at`` (a pasted token's expiry) or after ``lifetime``."""
        signed_in_at = self.clock()
        ends_at = signed_in_at + self.lifetime.total_seconds()
        if expires_at is not None:
            ends_at = min(ends_at, expires_at)
        session_id = secrets.token_urlsafe(32)
        record = {
            "sub": principal.sub,
            "org": principal.org,
            "roles": sorted(principal.roles),
            "clearance": principal.clearance,
            "signed_in_at": signed_in_at,
            "ends_at": ends_at,
            "via": via,
        }
        ttl = max(1, math.ceil(ends_at - signed_in_at))
        self._redis().set(self._store_key(session_id), json.dumps(record), ex=ttl)
        return session_id

    def load(self, session_id: str) -> dict | None:
        found = self._redis().get(self._store_key(session_id))
        if found is None:
            return None
        try:
            record = json.loads(found)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def end(self, session_id: str) -> None:
        self._redis().delete(self._store_key(session_id))

    def current(self) -> tuple[Principal | None, str | None]:
        """Who this request's session belongs to, checked now; or None and why not: None (never
        signed in), ``expired``, ``invalid`` or ``unavailable`` (Redis cannot be reached).
        Raises nothing."""
        from redis.exceptions import RedisError

        session_id = session.get(self.cookie_key)
        if not isinstance(session_id, str) or not session_id:
            return None, None
        try:
            record = self.load(session_id)
        except RedisError:
            return None, "unavailable"
        if record is None:  # ended by its time limit (Redis let it go) or signed out elsewhere
            return None, "expired"
        try:
            principal = Principal(
                sub=str(record["sub"]),
                org=str(record["org"]),
                roles=frozenset(record["roles"]),
                clearance=str(record["clearance"]),
            )
            ends_at = float(record["ends_at"])
        except (KeyError, TypeError, ValueError):
            return None, "invalid"
        if self.clock() >= ends_at:
            return None, "expired"
        if not self.may_enter(principal):
            return None, "invalid"
        return principal, None

    def begin(self, principal: Principal, expires_at: float | None, via: str = "token") -> None:
        """Sign this browser in: a fresh session (nothing from before signing in is carried
        over), audited. Raises RedisError when the session store cannot be reached."""
        self.end_current()
        session_id = self.start(principal, expires_at, via)
        session.clear()
        session.permanent = True
        session[self.cookie_key] = session_id
        audit_target(self.cookie_key, session_fingerprint(session_id), f"signed in ({via})")

    def end_current(self, *, audit: bool = False) -> None:
        from redis.exceptions import RedisError

        session_id = session.pop(self.cookie_key, None)
        if isinstance(session_id, str) and session_id:
            if audit:
                audit_target(self.cookie_key, session_fingerprint(session_id), "signed out")
            try:
                self.end(session_id)
            except RedisError:
                pass  # it ends by its own time limit anyway
