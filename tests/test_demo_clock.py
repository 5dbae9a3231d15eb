"""The demo clock (``X-Demo-Clock``, shared/clock.py): how ``make demo`` loads a year of history
through the real APIs. Honoured in development and test only; production refuses it and does
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from tests.dissemination.helpers import package_body
from tests.security.test_configuration import environment, production_env  # noqa: F401 - fixture

HEADER = "X-Demo-Clock"


def test_a_package_issued_under_the_demo_clock_carries_that_moment(client, token):
    issuer = token("NCLCC", "issuer")
    then = datetime(2025, 12, 8, 10, 30, tzinfo=UTC)
    created = client.post("/api/v1/packages", json=package_body(), headers={**issuer, HEADER: then.isoformat()})
    assert created.status_code == 201
    package = created.get_json()
    assert package["reference"].startswith("NCLCC-2025-")  # numbered in the year it happened
    issued = client.post(
        f"/api/v1/packages/{package['id']}/issue",
        headers={**issuer, HEADER: (then + timedelta(hours=1)).isoformat()},
    ).get_json()
    assert datetime.fromisoformat(issued["issued_at"]) == then + timedelta(hours=1)
    # The default due date runs from the moment it was issued, not from today.
    assert datetime.fromisoformat(issued["outcome_due_at"]) == then + timedelta(hours=1, days=28)
    # Without the header the next request is today again.
    later = client.post("/api/v1/packages", json=package_body(), headers=issuer).get_json()
    assert datetime.fromisoformat(later["created_at"]) > datetime.now(UTC) - timedelta(minutes=5)


def test_a_demo_clock_in_the_future_or_without_a_zone_is_refused_by_name(client, token):
    issuer = token("NCLCC", "issuer")
    for value, problem in (
        ((datetime.now(UTC) + timedelta(days=2)).isoformat(), "must not be in the future"),
        ("2026-03-01T09:00:00", "must give its time zone"),
        ("last tuesday", "must be an ISO 8601 time"),
    ):
        response = client.post("/api/v1/packages", json=package_body(), headers={**issuer, HEADER: value})
        assert response.status_code == 400
        assert HEADER in response.get_json()["message"] and problem in response.get_json()["message"]
    assert client.get("/api/v1/packages", headers=issuer).get_json() == []


def test_production_refuses_the_demo_clock_and_changes_nothing(clean_db, redis_conn, environment):  # noqa: F811
    from services.dissemination import create_app
    from services.dissemination.models import Package
    from shared.auth import mint_token

    environment(production_env())
    app = create_app()
    settings = app.extensions["settings"]
    assert settings.production
    issuer = mint_token(settings, sub="issuer@nclcc", org="NCLCC", roles=["issuer"])
    response = app.test_client().post(
        "/api/v1/packages",
        json=package_body(recipients=[]),
        headers={"Authorization": f"Bearer {issuer}", HEADER: "2026-01-05T09:00:00+00:00"},
    )
    assert response.status_code == 400
    assert response.get_json()["message"] == f"{HEADER} is honoured only in development."
    with app.extensions["database"].session() as session:
        assert session.scalar(select(func.count()).select_from(Package)) == 0
    # The same request without it is served as ever.
    served = app.test_client().post(
        "/api/v1/packages", json=package_body(recipients=[]), headers={"Authorization": f"Bearer {issuer}"}
    )
    assert served.status_code == 201
    app.extensions["database"].engine.dispose()
