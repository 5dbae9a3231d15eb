"""Building blocks for the tests of the recipients' pages."""

from __future__ import annotations

# The dashboard's tests read pages and the audit log the same way.
from tests.metrics.test_dashboard import csrf_token, location, raw, text
from tests.metrics.test_dashboard_security import audit_rows

__all__ = ["audit_rows", "csrf_token", "dissemination_id", "location", "raw", "sign_in", "text"]


def sign_in(client, jwt: str, next_path: str | None = None):
    """The development sign-in: a pasted token."""
    csrf = csrf_token(client.get("/sign-in").get_data(as_text=True))
    data = {"csrf_token": csrf, "token": jwt}
    if next_path:
        data["next"] = next_path
    return client.post("/sign-in", data=data)


def dissemination_id(client, token, reference: str, org: str = "GMP") -> str:
    inbox = client.get("/api/v1/inbox", headers=token(org, "recipient")).get_json()
    return next(item["id"] for item in inbox if item["package"]["reference"] == reference)
