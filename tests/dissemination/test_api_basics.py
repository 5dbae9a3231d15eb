"""What every caller meets first: docs, health, authentication and the error shape."""

from __future__ import annotations


def test_openapi_document_describes_the_api(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/packages/{package_id}/issue" in spec["paths"]
    assert "PackageCreate" in spec["components"]["schemas"]
    parameters = {p["name"] for p in spec["paths"]["/api/v1/packages"]["get"]["parameters"]}
    assert {"page", "per_page", "status"} <= parameters


def test_interactive_docs_are_served(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()
    # Its assets come from the service itself, not a CDN: the docs work on a closed network.
    assert b"/docs/assets/swagger-ui-bundle.js" in response.data
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_health_and_readiness_check_database_redis_workers_and_sweep(client, live_worker):
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.get_json()["checks"]
    assert list(checks) == ["database", "redis", "workers", "sweep"]
    assert all(check["ok"] for check in checks.values())


def test_no_token_is_401_with_the_error_shape(client):
    response = client.get("/api/v1/packages")
    assert response.status_code == 401
    body = response.get_json()
    assert body["code"] == 401 and body["status"] == "Unauthorized"
    assert "no bearer token" in body["message"]


def test_tampered_and_expired_tokens_are_refused(client, token, app):
    from datetime import timedelta

    from shared.auth import mint_token

    good = token("GMP", "recipient")["Authorization"]
    assert client.get("/api/v1/inbox", headers={"Authorization": good[:-3] + "abc"}).status_code == 401
    expired = mint_token(
        app.extensions["settings"], sub="x", org="GMP", roles=["recipient"], ttl=timedelta(seconds=-60)
    )  # past the 30 s leeway
    response = client.get("/api/v1/inbox", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.get_json()["message"]


def test_wrong_role_is_403(client, token):
    response = client.post("/api/v1/packages", json={}, headers=token("GMP", "recipient"))
    assert response.status_code == 403
    assert "issuer" in response.get_json()["message"]


def test_405_keeps_the_allow_header(client, token):
    response = client.delete("/api/v1/inbox", headers=token("GMP", "recipient"))
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET"}
    assert response.get_json()["code"] == 405


def test_malformed_json_is_400_not_500(client, token):
    response = client.post(
        "/api/v1/packages", data=b"{not json", headers={**token(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_a_json_list_instead_of_an_object_is_422(client, token):
    response = client.post("/api/v1/packages", json=[1, 2], headers=token())
    assert response.status_code == 422


def test_unknown_package_id_is_404(client, token):
    response = client.get("/api/v1/packages/00000000-0000-0000-0000-000000000000", headers=token())
    assert response.status_code == 404
    assert client.get("/api/v1/packages/not-a-uuid", headers=token()).status_code == 404


def test_lists_are_paginated_with_x_pagination(client, token):
    response = client.get("/api/v1/organisations?page=2&per_page=10", headers=token())
    assert response.status_code == 200
    assert len(response.get_json()) == 10
    import json

    meta = json.loads(response.headers["X-Pagination"])
    assert meta["total"] == 57 and meta["page"] == 2 and meta["total_pages"] == 6
    assert client.get("/api/v1/organisations?per_page=1000", headers=token()).status_code == 422


def test_api_answers_are_not_cached_or_sniffed(client, token):
    for response in (client.get("/api/v1/packages", headers=token()), client.get("/api/v1/packages")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
