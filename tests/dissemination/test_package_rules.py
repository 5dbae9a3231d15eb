"""Every rule a package must meet: one test each, asserting the field the 422 names and
that nothing was created or changed."""

from __future__ import annotations

import pytest

from tests.dissemination.helpers import create_package, in_days, package_body


def refused_field(client, headers, body) -> dict:
    before = client.get("/api/v1/packages", headers=headers).headers["X-Pagination"]
    response = client.post("/api/v1/packages", json=body, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert client.get("/api/v1/packages", headers=headers).headers["X-Pagination"] == before
    return response.get_json()["errors"]["json"]


def test_a_valid_package_is_created_as_a_draft_with_a_reference(client, token):
    package = create_package(client, token())
    assert package["status"] == "draft"
    assert package["reference"].startswith("NCLCC-2026-") or package["reference"][6:10].isdigit()
    import re

    assert re.fullmatch(r"NCLCC-\d{4}-\d{6}", package["reference"])
    assert package["recipients"] == ["GMP", "MPS"]


def test_references_are_unique_and_sequential(client, token):
    first = create_package(client, token())["reference"]
    second = create_package(client, token())["reference"]
    assert first != second
    assert int(second[-6:]) == int(first[-6:]) + 1


@pytest.mark.parametrize("marking", ["SECRET", "TOP SECRET"])
def test_classification_above_the_service_maximum_is_refused_clearly(client, token, marking):
    errors = refused_field(client, token(), package_body(classification=marking))
    assert "above the highest classification" in errors["classification"][0]
    assert "OFFICIAL-SENSITIVE" in errors["classification"][0]


def test_unknown_classification_is_refused(client, token):
    errors = refused_field(client, token(), package_body(classification="RESTRICTED"))
    assert "classification" in errors


def test_classification_above_the_issuers_clearance_is_refused(client, token):
    errors = refused_field(client, token(clearance="OFFICIAL"), package_body(classification="OFFICIAL-SENSITIVE"))
    assert "clearance" in errors["classification"][0]


@pytest.mark.parametrize("value", [0, 4, "1", 1.5, None])
def test_source_evaluation_must_be_1_to_3(client, token, value):
    assert "source_evaluation" in refused_field(client, token(), package_body(source_evaluation=value))


@pytest.mark.parametrize("value", ["F", "a", 1, ""])
def test_intelligence_assessment_must_be_a_to_e(client, token, value):
    assert "intelligence_assessment" in refused_field(client, token(), package_body(intelligence_assessment=value))


def test_handling_code_must_be_p_or_c(client, token):
    assert "handling_code" in refused_field(client, token(), package_body(handling_code="X"))


def test_handling_code_c_needs_conditions(client, token):
    errors = refused_field(client, token(), package_body(handling_code="C"))
    assert errors["handling_conditions"] == ["Handling code C needs the handling conditions."]
    create_package(client, token(), handling_code="C", handling_conditions="Not to be shared with partners.")


def test_threat_area_must_be_known(client, token):
    assert "threat_area" in refused_field(client, token(), package_body(threat_area="burglary"))


def test_unknown_recipient_is_refused(client, token):
    errors = refused_field(client, token(), package_body(recipients=["GMP", "NOPE"]))
    assert "NOPE" in errors["recipients"][0]


def test_a_recipient_listed_twice_is_refused(client, token):
    assert "recipients" in refused_field(client, token(), package_body(recipients=["GMP", "GMP"]))


def test_an_inactive_recipient_is_refused(client, token):
    client.patch("/api/v1/organisations/GMP", json={"active": False}, headers=token(roles="admin"))
    assert "recipients" in refused_field(client, token(), package_body(recipients=["GMP"]))


@pytest.mark.parametrize(
    "due", [-1, 0.01, 400, "2026-13-01T00:00:00+00:00"], ids=["past", "too-soon", "too-far", "no-such-month"]
)
def test_due_date_must_be_sane(client, token, due):
    due = in_days(due) if isinstance(due, int | float) else due  # made now: the test's ids stay stable
    assert "outcome_due_at" in refused_field(client, token(), package_body(outcome_due_at=due))


def test_due_date_needs_a_time_zone(client, token):
    errors = refused_field(client, token(), package_body(outcome_due_at="2027-01-10T12:00:00"))
    assert "outcome_due_at" in errors


def test_required_fields_are_named(client, token):
    errors = refused_field(client, token(), {})
    assert set(errors) >= {
        "title",
        "summary",
        "threat_area",
        "classification",
        "source_evaluation",
        "intelligence_assessment",
        "handling_code",
    }


def test_unknown_fields_are_refused(client, token):
    assert refused_field(client, token(), package_body(priority="high"))["priority"] == ["Unknown field."]


def test_editing_a_draft_checks_the_rules_on_the_result(client, token):
    package = create_package(client, token())
    url = f"/api/v1/packages/{package['id']}"
    response = client.patch(url, json={"handling_code": "C"}, headers=token())
    assert response.status_code == 422
    assert "handling_conditions" in response.get_json()["errors"]["json"]
    response = client.patch(
        url, json={"handling_code": "C", "handling_conditions": "No onward sharing."}, headers=token()
    )
    assert response.status_code == 200
    assert response.get_json()["handling_code"] == "C"
    response = client.patch(url, json={"recipients": ["WMP"], "title": "Revised title"}, headers=token())
    assert response.get_json()["recipients"] == ["WMP"]
    assert response.get_json()["title"] == "Revised title"
    assert client.patch(url, json={"title": None}, headers=token()).status_code == 422


def test_an_issued_package_cannot_be_edited(client, token):
    package = create_package(client, token())
    client.post(f"/api/v1/packages/{package['id']}/issue", headers=token())
    response = client.patch(f"/api/v1/packages/{package['id']}", json={"title": "Changed"}, headers=token())
    assert response.status_code == 409


def test_issuing_without_recipients_is_refused(client, token):
    package = create_package(client, token(), recipients=[])
    response = client.post(f"/api/v1/packages/{package['id']}/issue", headers=token())
    assert response.status_code == 422
    assert "recipients" in response.get_json()["errors"]["json"]
    assert client.get(f"/api/v1/packages/{package['id']}", headers=token()).get_json()["status"] == "draft"
