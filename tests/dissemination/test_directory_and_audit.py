"""The organisation directory (seeded with the real forces; admins edit it) and the audit log."""

from __future__ import annotations

import json

from tests.dissemination.helpers import create_package, issue_package


def total(response) -> int:
    return json.loads(response.headers["X-Pagination"])["total"]


def test_the_directory_holds_the_uk_forces_rocus_and_the_centre(client, token):
    headers = token("GMP", "recipient")
    forces = client.get("/api/v1/organisations?kind=territorial_force&per_page=100", headers=headers)
    codes = {o["code"] for o in forces.get_json()}
    assert len(codes) == 45  # 43 in England and Wales, Police Scotland, PSNI
    assert {"GMP", "MPS", "WMP", "PSCOT", "PSNI"} <= codes
    assert total(client.get("/api/v1/organisations?kind=rocu", headers=headers)) == 10
    btp = client.get("/api/v1/organisations/BTP", headers=headers).get_json()
    assert btp["name"] == "British Transport Police"
    centre = client.get("/api/v1/organisations/NCLCC", headers=headers).get_json()
    assert centre["kind"] == "national"
    north_west = client.get("/api/v1/organisations?region=North%20West", headers=headers).get_json()
    assert "ROCU-NW" in {o["code"] for o in north_west}


def test_seeding_again_adds_nothing_and_keeps_edits(client, token, app):
    admin = token(roles="admin")
    client.patch("/api/v1/organisations/GMP", json={"email": "intel.returns@gmp.example"}, headers=admin)
    with app.app_context():
        from services.dissemination.directory import seed_directory
        from shared.db import get_session

        assert seed_directory(get_session(), app.extensions["settings"]) == (0, 57)
    assert client.get("/api/v1/organisations/GMP", headers=admin).get_json()["email"] == "intel.returns@gmp.example"


def test_admins_edit_contacts_and_the_change_is_emitted(client, token, run_jobs, consumer):
    admin = token(roles="admin")
    response = client.patch(
        "/api/v1/organisations/GMP",
        json={"webhook_url": "https://hooks.gmp.example/in", "escalation_email": "duty.inspector@gmp.example"},
        headers=admin,
    )
    assert response.status_code == 200
    run_jobs()
    updates = [e for e in consumer.of_type("organisation.updated") if e["aggregate_id"] == "GMP"]
    assert updates[-1]["payload"]["escalation_email"] == "duty.inspector@gmp.example"


def test_contact_fields_are_validated(client, token):
    admin = token(roles="admin")
    response = client.patch(
        "/api/v1/organisations/GMP", json={"email": "not-an-email", "webhook_url": "ftp://x"}, headers=admin
    )
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"email", "webhook_url"}
    assert client.patch("/api/v1/organisations/GMP", json={"code": "X"}, headers=admin).status_code == 422


def test_only_admins_change_the_directory(client, token):
    assert client.patch("/api/v1/organisations/GMP", json={"name": "x y"}, headers=token()).status_code == 403
    body = {"code": "NCA", "name": "National Crime Agency", "kind": "national"}
    assert client.post("/api/v1/organisations", json=body, headers=token()).status_code == 403
    created = client.post("/api/v1/organisations", json=body, headers=token(roles="admin"))
    assert created.status_code == 201 and created.get_json()["code"] == "NCA"
    assert client.post("/api/v1/organisations", json=body, headers=token(roles="admin")).status_code == 409


def test_an_unknown_organisation_is_404(client, token):
    assert client.get("/api/v1/organisations/NOPE", headers=token()).status_code == 404


def test_every_read_write_and_refusal_is_audited(client, token):
    package = create_package(client, token(sub="analyst@nclcc"))
    client.get(f"/api/v1/packages/{package['id']}", headers=token("GMP", "recipient"))
    client.post(f"/api/v1/packages/{package['id']}/issue", headers=token(sub="analyst@nclcc"))
    client.get(f"/api/v1/packages/{package['id']}", headers=token("GMP", "recipient", sub="officer@gmp"))
    entries = client.get(f"/api/v1/audit?target_id={package['id']}", headers=token(roles="admin")).get_json()
    seen = [(e["actor"], e["method"], e["status_code"], e["outcome"]) for e in reversed(entries)]
    assert seen == [
        ("analyst@nclcc", "POST", 201, "allowed"),
        ("recipient@gmp", "GET", 404, "refused"),
        ("analyst@nclcc", "POST", 200, "allowed"),
        ("officer@gmp", "GET", 200, "allowed"),
    ]
    assert all(e["at"].endswith("+00:00") for e in entries)


def test_refusals_without_a_token_are_audited_too(client, token):
    client.get("/api/v1/inbox")
    entries = client.get("/api/v1/audit?outcome=refused", headers=token(roles="admin")).get_json()
    assert entries[0]["actor"] is None and entries[0]["status_code"] == 401


def test_the_audit_log_is_admin_only_and_filterable(client, token):
    issue_package(client, token(), recipients=["GMP"])
    assert client.get("/api/v1/audit", headers=token()).status_code == 403
    admin = token(roles="admin")
    by_org = client.get("/api/v1/audit?actor_org=NCLCC&action=POST%20/api/v1/packages", headers=admin).get_json()
    assert len(by_org) == 1 and by_org[0]["status_code"] == 201
    future = client.get("/api/v1/audit?since=2100-01-01T00:00:00%2B00:00", headers=admin).get_json()
    assert future == []
    assert client.get("/api/v1/audit?outcome=maybe", headers=admin).status_code == 422


def test_an_answered_request_commits_once_with_its_audit_entry(client, token, app):
    """A write's entry commits with the change it records, a read's with the read: one commit
    per request, and the entry says what the answer was."""
    from sqlalchemy import event

    engine = app.extensions["database"].engine
    commits: list[int] = []

    def counted(_connection):
        commits.append(1)

    event.listen(engine, "commit", counted)
    try:
        package = create_package(client, token(sub="analyst@nclcc"))
        after_write = len(commits)
        read = client.get(f"/api/v1/packages/{package['id']}", headers=token(sub="reader@nclcc"))
        after_read = len(commits) - after_write
    finally:
        event.remove(engine, "commit", counted)
    assert read.status_code == 200
    assert (after_write, after_read) == (1, 1)
    entries = client.get(f"/api/v1/audit?target_id={package['id']}", headers=token(roles="admin")).get_json()
    assert [(e["actor"], e["method"], e["status_code"], e["outcome"]) for e in reversed(entries)] == [
        ("analyst@nclcc", "POST", 201, "allowed"),
        ("reader@nclcc", "GET", 200, "allowed"),
    ]


def test_an_entry_foreseen_for_a_read_binds_every_column_an_entry_has(app, token):
    """A read that writes its entry in its own statement binds ``ENTRY_COLUMNS``: they are
    the columns every entry is made of, and the audit table has each of them."""
    from shared.audit import ENTRY_COLUMNS, _entry, audit_table, entry_params, foreseen_entry

    with app.test_request_context("/api/v1/organisations", headers=token()):
        entry = _entry(200, None)
        foreseen = foreseen_entry()
        assert tuple(entry) == ENTRY_COLUMNS
        assert set(ENTRY_COLUMNS) <= {column.name for column in audit_table().columns}
        assert foreseen is not None and set(entry_params(foreseen)) == {f"entry_{name}" for name in ENTRY_COLUMNS}
