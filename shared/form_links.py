"""Signed links to the recipient web form: bound to one return, and they expire.

The form is the outcomes service's (``/form/<token>``); the dissemination service mints the same
links for a signed-in recipient's own dissemination (its expected return has the same id). Both
sign with ``FORM_SECRET``, so each holds it; nothing else does.
"""

from __future__ import annotations

import uuid

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared.settings import Settings

SALT = "outcome-form-v1"
# The service that serves the form (by its name in the settings' URLs).
FORM_SERVICE = "outcomes"
FORM_LINK_SECONDS = 120 * 24 * 3600  # long enough to amend a return well after it is due


class LinkProblem(Exception):
    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.form_secret, salt=SALT)


def form_token(settings: Settings, return_id: uuid.UUID) -> str:
    return _serializer(settings).dumps({"return": str(return_id)})


def form_url(settings: Settings, return_id: uuid.UUID) -> str:
    return f"{settings.public_urls[FORM_SERVICE]}/form/{form_token(settings, return_id)}"


def return_id_from(settings: Settings, token: str, max_age: int | None = None) -> uuid.UUID:
    try:
        data = _serializer(settings).loads(token, max_age=FORM_LINK_SECONDS if max_age is None else max_age)
    except SignatureExpired as error:
        raise LinkProblem("This link has expired.", expired=True) from error
    except BadSignature as error:
        raise LinkProblem("This link is not valid.") from error
    try:
        return uuid.UUID(data["return"])
    except (KeyError, TypeError, ValueError) as error:
        raise LinkProblem("This link is not valid.") from error
