"""Building blocks for the tests of the recipients' pages."""

from __future__ import annotations

import html
import re

from sqlalchemy import select


def raw(headers: dict) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found[1]


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def location(response) -> str:
    return response.headers["Location"]


def sign_in(client, jwt: str, next_path: str | None = None):
    """The development sign-in: a pasted token."""
    csrf = csrf_token(client.get("/sign-in").get_data(as_text=True))
    data = {"csrf_token": csrf, "token": jwt}
    if next_path:
        data["next"] = next_path
    return client.post("/sign-in", data=data)


def audit_rows(app) -> list:
    model = app.extensions["service"].models.AuditEntry
    session = app.extensions["database"].session()
    try:
        return session.scalars(select(model).order_by(model.id)).all()
    finally:
        session.close()


def dissemination_id(client, token, reference: str, org: str = "GMP") -> str:
    inbox = client.get("/api/v1/inbox", headers=token(org, "recipient")).get_json()
    return next(item["id"] for item in inbox if item["package"]["reference"] == reference)
