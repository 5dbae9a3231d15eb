"""Recipients see only their own organisation's packages; nobody sees above their clearance.
Anything out of reach answers 404, as if it did not exist, and the refusal is audited."""

from __future__ import annotations

from tests.dissemination.helpers import create_package, issue_package


def audit_entries(client, token, **filters):
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return client.get(f"/api/v1/audit?per_page=100&{query}", headers=token(roles="admin")).get_json()


def test_inbox_shows_a_package_only_to_its_recipients(client, token):
    package = issue_package(client, token(), recipients=["GMP", "MPS"])
    for org in ("GMP", "MPS"):
        inbox = client.get("/api/v1/inbox", headers=token(org, "recipient")).get_json()
        assert [item["package"]["reference"] for item in inbox] == [package["reference"]]
        assert inbox[0]["organisation"] == org
        assert inbox[0]["package"]["summary"].startswith("Phone 07700")
    assert client.get("/api/v1/inbox", headers=token("WMP", "recipient")).get_json() == []


def test_drafts_are_in_nobodys_inbox(client, token):
    create_package(client, token(), recipients=["GMP"])
    assert client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json() == []


def test_another_organisations_package_is_404_and_audited(client, token):
    package = issue_package(client, token(), recipients=["GMP"])
    response = client.get(f"/api/v1/packages/{package['id']}", headers=token("WMP", "recipient"))
    assert response.status_code == 404
    assert client.get(f"/api/v1/packages/{package['id']}", headers=token("GMP", "recipient")).status_code == 200
    refused = audit_entries(client, token, target_id=package["id"], outcome="refused")
    assert len(refused) == 1
    assert refused[0]["actor_org"] == "WMP" and refused[0]["status_code"] == 404
    assert "not disseminated to WMP" in refused[0]["detail"]


def test_another_organisations_dissemination_is_404_and_cannot_be_acknowledged(client, token):
    package = issue_package(client, token(), recipients=["GMP"])
    gmp_item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    wmp = token("WMP", "recipient")
    assert client.get(f"/api/v1/disseminations/{gmp_item['id']}", headers=wmp).status_code == 404
    assert client.post(f"/api/v1/disseminations/{gmp_item['id']}/acknowledge", headers=wmp).status_code == 404
    rows = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
    assert rows[0]["acknowledged_at"] is None
    assert len(audit_entries(client, token, target_id=gmp_item["id"], outcome="refused")) == 2


def test_recipients_cannot_list_a_packages_disseminations(client, token):
    package = issue_package(client, token(), recipients=["GMP"])
    response = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token("GMP", "recipient"))
    assert response.status_code == 403


def test_package_list_for_a_recipient_is_its_own_packages(client, token):
    mine = issue_package(client, token(), recipients=["GMP"])
    issue_package(client, token(), recipients=["MPS"])
    create_package(client, token(), recipients=["GMP"])
    listed = client.get("/api/v1/packages", headers=token("GMP", "recipient")).get_json()
    assert [p["id"] for p in listed] == [mine["id"]]
    assert len(client.get("/api/v1/packages", headers=token()).get_json()) == 3


def test_clearance_filters_every_read(client, token):
    sensitive = issue_package(client, token(), recipients=["GMP"], classification="OFFICIAL-SENSITIVE")
    official = issue_package(client, token(), recipients=["GMP"], classification="OFFICIAL")
    low = token("GMP", "recipient", clearance="OFFICIAL")
    inbox = client.get("/api/v1/inbox", headers=low).get_json()
    assert [item["package_id"] for item in inbox] == [official["id"]]
    assert client.get(f"/api/v1/packages/{sensitive['id']}", headers=low).status_code == 404
    listed = client.get("/api/v1/packages", headers=token(clearance="OFFICIAL")).get_json()
    assert [p["id"] for p in listed] == [official["id"]]
    refused = audit_entries(client, token, target_id=sensitive["id"], outcome="refused")
    assert "clearance OFFICIAL below OFFICIAL-SENSITIVE" in refused[0]["detail"]


def test_acknowledgement_is_recorded_once_and_emitted(client, token, run_jobs, consumer):
    issue_package(client, token(), recipients=["GMP"])
    item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    url = f"/api/v1/disseminations/{item['id']}/acknowledge"
    first = client.post(url, headers=token("GMP", "recipient", sub="duty.officer@gmp"))
    assert first.status_code == 200
    body = first.get_json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "duty.officer@gmp"
    second = client.post(url, headers=token("GMP", "recipient", sub="someone.else@gmp"))
    assert second.get_json()["acknowledged_at"] == body["acknowledged_at"]
    assert second.get_json()["acknowledged_by"] == "duty.officer@gmp"
    run_jobs()
    assert len(consumer.of_type("dissemination.acknowledged")) == 1


def test_a_withdrawn_package_cannot_be_acknowledged(client, token):
    package = issue_package(client, token(), recipients=["GMP"])
    client.post(f"/api/v1/packages/{package['id']}/withdraw", json={"reason": "Superseded."}, headers=token())
    item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    assert item["status"] == "withdrawn"
    response = client.post(f"/api/v1/disseminations/{item['id']}/acknowledge", headers=token("GMP", "recipient"))
    assert response.status_code == 409


def test_inbox_filters_by_status(client, token):
    issue_package(client, token(), recipients=["GMP"])
    second = issue_package(client, token(), recipients=["GMP"])
    gmp = token("GMP", "recipient")
    item = next(i for i in client.get("/api/v1/inbox", headers=gmp).get_json() if i["package_id"] == second["id"])
    client.post(f"/api/v1/disseminations/{item['id']}/acknowledge", headers=gmp)
    acknowledged = client.get("/api/v1/inbox?status=acknowledged", headers=gmp).get_json()
    assert [i["package_id"] for i in acknowledged] == [second["id"]]
    assert len(client.get("/api/v1/inbox?status=pending_delivery", headers=gmp).get_json()) == 1
    assert client.get("/api/v1/inbox?status=bogus", headers=gmp).status_code == 422


def test_a_recipient_never_learns_who_else_received_a_package(client, token):
    """Finding 12: recipients saw every other recipient of a package, and could probe with the
    ``recipient`` filter."""
    package = issue_package(client, token(), recipients=["GMP", "MPS", "WMP"])
    centre_view = client.get(f"/api/v1/packages/{package['id']}", headers=token()).get_json()
    assert sorted(centre_view["recipients"]) == ["GMP", "MPS", "WMP"]
    gmp = token("GMP", "recipient")
    assert client.get(f"/api/v1/packages/{package['id']}", headers=gmp).get_json()["recipients"] == ["GMP"]
    listed = client.get("/api/v1/packages", headers=gmp).get_json()
    assert [row["recipients"] for row in listed] == [["GMP"]]
    # Asking for packages that went to MPS tells GMP nothing: the filter is not applied for it.
    assert len(client.get("/api/v1/packages?recipient=MPS", headers=gmp).get_json()) == 1
    assert len(client.get("/api/v1/packages?recipient=NYP", headers=gmp).get_json()) == 1
    assert client.get("/api/v1/packages?recipient=NYP", headers=token()).get_json() == []
    # A force's token that claims the centre's roles is still a force.
    claimed = token("GMP", "recipient,issuer,admin,leader")
    assert client.get(f"/api/v1/packages/{package['id']}", headers=claimed).get_json()["recipients"] == ["GMP"]
