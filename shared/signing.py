"""HMAC signatures over a timestamp and a body: for events between services (webhooks to
organisations are signed by the Standard Webhooks scheme instead, see ``shared.notify``).

The signed string is ``"<unix timestamp>.<body>"``, so a captured request cannot be replayed
after ``MAX_SKEW_SECONDS`` nor its body changed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_SKEW_SECONDS = 300
TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(secret: str, headers, body: bytes, now: float | None = None) -> str | None:
    """None when the signature is good, else why it is not."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not timestamp or not given:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required"
    if not timestamp.isdigit():
        return f"{TIMESTAMP_HEADER} must be a unix timestamp"
    if abs((now if now is not None else time.time()) - int(timestamp)) > MAX_SKEW_SECONDS:
        return "signature timestamp is too old or in the future"
    if not hmac.compare_digest(signature(secret, timestamp, body), given):
        return "signature does not match"
    return None
