"""A POST retried with the same Idempotency-Key gets the first answer and creates nothing."""

from __future__ import annotations

from tests.dissemination.helpers import create_package, package_body


def count_packages(client, token) -> int:
    import json

    return json.loads(client.get("/api/v1/packages", headers=token()).headers["X-Pagination"])["total"]


def test_a_retried_create_returns_the_first_package(client, token):
    headers = {**token(), "Idempotency-Key": "create-1"}
    first = client.post("/api/v1/packages", json=package_body(), headers=headers)
    again = client.post("/api/v1/packages", json=package_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_packages(client, token) == 1


def test_a_new_key_creates_a_new_package(client, token):
    client.post("/api/v1/packages", json=package_body(), headers={**token(), "Idempotency-Key": "a"})
    client.post("/api/v1/packages", json=package_body(), headers={**token(), "Idempotency-Key": "b"})
    assert count_packages(client, token) == 2


def test_the_same_key_with_a_different_body_is_refused(client, token):
    headers = {**token(), "Idempotency-Key": "create-2"}
    client.post("/api/v1/packages", json=package_body(), headers=headers)
    response = client.post("/api/v1/packages", json=package_body(title="Something else"), headers=headers)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]["headers"]
    assert count_packages(client, token) == 1


def test_keys_belong_to_their_caller(client, token):
    client.post("/api/v1/packages", json=package_body(), headers={**token(sub="a@nclcc"), "Idempotency-Key": "k"})
    client.post("/api/v1/packages", json=package_body(), headers={**token(sub="b@nclcc"), "Idempotency-Key": "k"})
    assert count_packages(client, token) == 2


def test_a_refused_request_is_not_remembered(client, token):
    headers = {**token(), "Idempotency-Key": "fix-and-retry"}
    assert client.post("/api/v1/packages", json=package_body(handling_code="C"), headers=headers).status_code == 422
    fixed = package_body(handling_code="C", handling_conditions="No onward sharing.")
    assert client.post("/api/v1/packages", json=fixed, headers=headers).status_code == 201
    assert count_packages(client, token) == 1


def test_a_retried_issue_issues_once(client, token, session):
    package = create_package(client, token())
    headers = {**token(), "Idempotency-Key": "issue-1"}
    first = client.post(f"/api/v1/packages/{package['id']}/issue", headers=headers)
    again = client.post(f"/api/v1/packages/{package['id']}/issue", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    from services.dissemination.models import Dissemination, OutboxEvent

    assert session.query(Dissemination).count() == 2
    assert session.query(OutboxEvent).filter_by(type="package.issued").count() == 1


def test_an_overlong_key_is_400(client, token):
    response = client.post("/api/v1/packages", json=package_body(), headers={**token(), "Idempotency-Key": "x" * 201})
    assert response.status_code == 400
    assert count_packages(client, token) == 0


def test_keys_are_scoped_by_organisation_not_sub_alone(client, outcomes_client, token, pump_events):
    """Finding 7: a user of another organisation with the same ``sub`` and key got GMP's stored
    outcome. Keys belong to (organisation, subject), and the access check runs first."""
    from tests.outcomes.helpers import issued_returns, outcome_body

    returns = issued_returns(client, token, pump_events)
    path = f"/api/v1/returns/{returns['GMP']}/outcomes"
    gmp = {**token("GMP", "recipient", sub="duty-officer"), "Idempotency-Key": "return-1"}
    filed = outcomes_client.post(path, json=outcome_body(), headers=gmp)
    assert filed.status_code == 201
    mps = {**token("MPS", "recipient", sub="duty-officer"), "Idempotency-Key": "return-1"}
    stolen = outcomes_client.post(path, json=outcome_body(), headers=mps)
    assert stolen.status_code == 404
    assert "Idempotent-Replayed" not in stolen.headers
    assert "Warrant executed" not in stolen.get_data(as_text=True)


def test_a_replay_checks_access_again(client, outcomes_client, token, pump_events):
    """The same caller retrying after losing clearance for the package gets no replay."""
    from tests.outcomes.helpers import issued_returns, outcome_body

    returns = issued_returns(client, token, pump_events, classification="OFFICIAL-SENSITIVE")
    path = f"/api/v1/returns/{returns['GMP']}/outcomes"
    first = {**token("GMP", "recipient", sub="analyst"), "Idempotency-Key": "k-1"}
    assert outcomes_client.post(path, json=outcome_body(), headers=first).status_code == 201
    downgraded = {**token("GMP", "recipient", clearance="OFFICIAL", sub="analyst"), "Idempotency-Key": "k-1"}
    replay = outcomes_client.post(path, json=outcome_body(), headers=downgraded)
    assert replay.status_code == 404
    assert "Idempotent-Replayed" not in replay.headers
    again = outcomes_client.post(path, json=outcome_body(), headers=first)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
