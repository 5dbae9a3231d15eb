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
