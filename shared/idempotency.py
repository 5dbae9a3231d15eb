"""``Idempotency-Key`` for POSTs: a retry with the same key gets the first answer again and
creates nothing new.

The answer is stored in the same transaction as the change it describes (the view's
``commit`` is deferred to here), so a crash can never leave a change without its record.
Keys are per caller: organisation and subject together, so a user of another organisation who
happens to share a ``sub`` never meets GMP's keys. Reusing a key for a different request is
refused. Before an answer is replayed the view's own access check runs again (``authorise``),
so a replay never shows what the caller may no longer see.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable

from flask import Response, current_app, g, request
from flask_smorest import abort
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.auth import current_principal
from shared.db import get_session

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Content-Type", "Location")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(request.full_path.encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(record) -> Response:
    response = Response(record.response_body, status=record.status_code)
    for name, value in (record.response_headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _caller_scope() -> str:
    principal = current_principal()
    if principal is None:
        return "anonymous"
    scope = json.dumps([principal.org, principal.sub])
    # The column holds 200 characters; a longer pair is kept as its digest.
    return scope if len(scope) <= 200 else "sha256:" + hashlib.sha256(scope.encode()).hexdigest()


def idempotent(view: Callable | None = None, *, authorise: Callable[..., object] | None = None) -> Callable:
    """Decorate a POST view (inside ``require``) to honour ``Idempotency-Key``.

    ``authorise`` gets the view's URL arguments and must abort (404/403) when the caller may
    not act on that resource; it runs before a stored answer is replayed.
    """
    if view is None:
        return functools.partial(idempotent, authorise=authorise)

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip()
        if not 1 <= len(key) <= 200:
            abort(
                400,
                message=f"{HEADER} must be 1 to 200 characters.",
                errors={"headers": {HEADER: ["Must be 1 to 200 characters."]}},
            )
        caller = _caller_scope()
        model = current_app.extensions["service"].models.IdempotencyRecord
        session = get_session()
        fingerprint = _fingerprint()
        existing = session.scalar(select(model).where(model.principal == caller, model.key == key))
        if existing is not None:
            if authorise is not None:
                authorise(**kwargs)
            return _answer_for_existing(existing, fingerprint)
        session.info["defer_commit"] = True
        try:
            response = view(*args, **kwargs)
        finally:
            session.info.pop("defer_commit", None)
        session.add(
            model(
                principal=caller,
                key=key,
                method=request.method,
                path=request.path,
                fingerprint=fingerprint,
                status_code=response.status_code,
                response_body=response.get_data(as_text=True),
                response_headers={h: response.headers[h] for h in KEPT_HEADERS if h in response.headers},
            )
        )
        try:
            session.commit()
        except IntegrityError:
            # A concurrent retry with the same key committed first: answer as it did.
            session.rollback()
            existing = session.scalar(select(model).where(model.principal == caller, model.key == key))
            if existing is None:
                raise
            return _answer_for_existing(existing, fingerprint)
        g.idempotency_key = key
        return response

    return wrapper


def _answer_for_existing(record, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        abort(
            422,
            message=f"This {HEADER} was already used for a different request.",
            errors={"headers": {HEADER: ["Already used for a different request; use a new key."]}},
        )
    return _replay(record)


def init_app(app) -> None:
    """Nothing to wire yet; kept so every shared module is set up the same way."""
