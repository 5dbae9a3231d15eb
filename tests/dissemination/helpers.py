"""Building blocks for the dissemination tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def package_body(**changes) -> dict:
    body = {
        "title": "County line 'Dex' supplying Wigan",
        "summary": "Phone 07700 900123 runs a line from Liverpool into Wigan; runners aged 14-16.",
        "threat_area": "county_lines",
        "classification": "OFFICIAL-SENSITIVE",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "recipients": ["GMP", "MPS"],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def create_package(client, headers, **changes) -> dict:
    response = client.post("/api/v1/packages", json=package_body(**changes), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def issue_package(client, headers, **changes) -> dict:
    package = create_package(client, headers, **changes)
    response = client.post(f"/api/v1/packages/{package['id']}/issue", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
