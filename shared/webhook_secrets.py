"""Each organisation's webhook signing secret (Standard Webhooks, ``whsec_<base64>``).

A secret is generated when an organisation's webhook URL is set and when an admin rotates it,
shown once in that answer and otherwise kept only sealed: encrypted (Fernet) with a key derived
from ``WEBHOOK_SECRETS_KEY``. The sealed value is what the organisation directory stores, what
its ``organisation.updated`` events carry and what the other services that send webhooks keep,
so neither a database dump nor the event log (which services without the key also read) gives
the secret away; only a process holding ``WEBHOOK_SECRETS_KEY`` (``Service.signs_webhooks``)
can sign.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

from shared.settings import Settings

PREFIX = "whsec_"
SECRET_BYTES = 32


class SecretUnavailable(Exception):
    """There is no usable secret (none yet, or sealed under another key)."""


def generate() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet(settings: Settings) -> Fernet:
    if not settings.webhook_secrets_key:
        raise SecretUnavailable("WEBHOOK_SECRETS_KEY is not set in this service")
    digest = hashlib.sha256(b"nclcc webhook secrets\x00" + settings.webhook_secrets_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, secret: str) -> str:
    return _fernet(settings).encrypt(secret.encode()).decode()


def unseal(settings: Settings, sealed: str | None) -> str:
    if not sealed:
        raise SecretUnavailable("no webhook secret")
    try:
        return _fernet(settings).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise SecretUnavailable("the webhook secret was sealed with another WEBHOOK_SECRETS_KEY") from None


def new_sealed(settings: Settings) -> str:
    """A new secret, sealed."""
    return seal(settings, generate())
