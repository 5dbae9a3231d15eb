"""Expected returns from issued packages, and filing outcomes by API."""

from __future__ import annotations

import json

import pytest

from tests.outcomes.helpers import issued_returns, outcome_body


@pytest.fixture
def returns(client, token, pump_events, outcomes_client):
    return issued_returns(client, token, pump_events)


def file(outcomes_client, token, return_id, org="GMP", **changes):
    return outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(**changes), headers=token(org, "recipient")
    )


def test_an_issued_package_makes_one_expected_return_per_dissemination(returns, outcomes_client, token, client):
    listed = outcomes_client.get("/api/v1/returns", headers=token()).get_json()
    assert {r["id"] for r in listed} == set(returns.values())
    one = outcomes_client.get(f"/api/v1/returns/{returns['GMP']}", headers=token()).get_json()
    assert one["organisation"] == "GMP" and one["status"] == "open" and one["versions"] == 0
    dissemination = client.get(f"/api/v1/disseminations/{returns['GMP']}", headers=token()).get_json()
    assert one["due_at"] == dissemination["due_at"] and one["package_id"] == dissemination["package_id"]


def test_a_redelivered_event_changes_nothing(returns, outcomes_client, token, pump_events, app, outcomes_app):
    from sqlalchemy import select

    from shared import signing

    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    event = session.scalars(select(models.OutboxEvent).where(models.OutboxEvent.type == "package.issued")).one()
    message = event.as_message("dissemination")
    session.close()
    body = json.dumps(message).encode()
    secret = outcomes_app.extensions["settings"].event_secret
    response = outcomes_client.post("/internal/events", data=body, headers=signing.signed_headers(secret, body))
    assert response.get_json()["result"] == "duplicate"
    assert len(outcomes_client.get("/api/v1/returns", headers=token()).get_json()) == 2


def test_form_url_is_given_to_the_recipient_only(returns, outcomes_client, token):
    mine = outcomes_client.get(f"/api/v1/returns/{returns['GMP']}", headers=token("GMP", "recipient")).get_json()
    assert mine["form_url"].startswith("http") and "/form/" in mine["form_url"]
    assert outcomes_client.get(f"/api/v1/returns/{returns['GMP']}", headers=token()).get_json()["form_url"] is None


def test_a_recipient_sees_and_files_only_its_own_returns(returns, outcomes_client, token):
    listed = outcomes_client.get("/api/v1/returns", headers=token("GMP", "recipient")).get_json()
    assert [r["id"] for r in listed] == [returns["GMP"]]
    gmp = token("GMP", "recipient")
    assert outcomes_client.get(f"/api/v1/returns/{returns['MPS']}", headers=gmp).status_code == 404
    response = file(outcomes_client, token, returns["MPS"], org="GMP")
    assert response.status_code == 404
    assert outcomes_client.get(f"/api/v1/returns/{returns['MPS']}/outcomes", headers=token()).get_json() == []
    refused = outcomes_client.get(
        f"/api/v1/audit?target_id={returns['MPS']}&outcome=refused", headers=token(roles="admin")
    ).get_json()
    assert len(refused) == 2 and all(e["actor_org"] == "GMP" for e in refused)
    assert "belongs to MPS" in refused[0]["detail"]


def test_only_recipients_file(returns, outcomes_client, token):
    response = outcomes_client.post(f"/api/v1/returns/{returns['GMP']}/outcomes", json=outcome_body(), headers=token())
    assert response.status_code == 403


def test_interim_then_final_then_amendment_keeps_every_version(returns, outcomes_client, token):
    rid = returns["GMP"]
    assert file(outcomes_client, token, rid).status_code == 201
    view = outcomes_client.get(f"/api/v1/returns/{rid}", headers=token()).get_json()
    assert view["status"] == "interim_returned" and view["returned_at"] is None
    final = file(outcomes_client, token, rid, status="final", results={"arrests": 5}, attribution="contributed")
    assert final.status_code == 201 and final.get_json()["version"] == 2
    amended = file(
        outcomes_client,
        token,
        rid,
        status="final",
        results={"arrests": 6},
        attribution="contributed",
        comments="One more arrest after the warrant.",
    )
    assert amended.get_json()["version"] == 3
    history = outcomes_client.get(f"/api/v1/returns/{rid}/outcomes", headers=token()).get_json()
    assert [(o["version"], o["status"], o["results"]["arrests"]) for o in history] == [
        (1, "interim", 3),
        (2, "final", 5),
        (3, "final", 6),
    ]
    view = outcomes_client.get(f"/api/v1/returns/{rid}", headers=token()).get_json()
    assert view["status"] == "returned" and view["versions"] == 3
    assert view["current"]["results"]["arrests"] == 6 and view["current"]["comments"].startswith("One more")
    assert view["returned_at"] == history[1]["filed_at"]  # the first final return counts


def test_after_a_final_return_an_interim_is_refused(returns, outcomes_client, token):
    file(outcomes_client, token, returns["GMP"], status="final")
    response = file(outcomes_client, token, returns["GMP"], status="interim")
    assert response.status_code == 422 and "status" in response.get_json()["errors"]["json"]


def test_filing_emits_outcome_filed_with_the_whole_return(returns, outcomes_client, token, consumer, run_jobs):
    file(outcomes_client, token, returns["GMP"], status="final")
    run_jobs("outcomes")
    filed = consumer.of_type("outcome.filed")
    assert len(filed) == 1
    payload = filed[0]["payload"]
    assert payload["return_id"] == returns["GMP"] and payload["status"] == "final" and payload["version"] == 1
    assert payload["outcome"]["results"]["arrests"] == 3 and payload["outcome"]["attribution"] == "direct"
    assert payload["outcome"]["intelligence_feedback"]["accuracy"] == "confirmed"
    assert payload["on_time"] is True


def test_a_final_return_marks_the_dissemination_returned(
    returns, outcomes_client, outcomes_app, token, client, pump_events, app
):
    file(outcomes_client, token, returns["GMP"], status="final")
    pump_events(source=outcomes_app, target=app)
    row = client.get(f"/api/v1/disseminations/{returns['GMP']}", headers=token()).get_json()
    assert row["status"] == "returned" and row["returned_at"]


def test_a_retried_filing_with_the_same_key_files_once(returns, outcomes_client, token):
    headers = {**token("GMP", "recipient"), "Idempotency-Key": "gmp-return-1"}
    url = f"/api/v1/returns/{returns['GMP']}/outcomes"
    first = outcomes_client.post(url, json=outcome_body(), headers=headers)
    again = outcomes_client.post(url, json=outcome_body(), headers=headers)
    assert first.status_code == again.status_code == 201 and first.get_json() == again.get_json()
    assert len(outcomes_client.get(f"{url}", headers=token()).get_json()) == 1


def test_a_withdrawn_package_takes_no_return(returns, outcomes_client, token, client, pump_events):
    package_id = client.get(f"/api/v1/disseminations/{returns['GMP']}", headers=token()).get_json()["package_id"]
    client.post(f"/api/v1/packages/{package_id}/withdraw", json={"reason": "Source compromised."}, headers=token())
    pump_events()
    assert file(outcomes_client, token, returns["GMP"]).status_code == 409
    view = outcomes_client.get(f"/api/v1/returns/{returns['GMP']}", headers=token()).get_json()
    assert view["status"] == "withdrawn"
    assert outcomes_client.get("/api/v1/returns?status=withdrawn", headers=token()).headers["X-Pagination"]


def test_lists_filter_by_status_org_and_package(returns, outcomes_client, token):
    file(outcomes_client, token, returns["GMP"], status="final")

    def ids(query):
        return {r["id"] for r in outcomes_client.get(f"/api/v1/returns?{query}", headers=token()).get_json()}

    assert ids("status=returned") == {returns["GMP"]}
    assert ids("status=open") == {returns["MPS"]}
    assert ids("org=MPS") == {returns["MPS"]}
    assert ids("status=overdue") == set()
    assert outcomes_client.get("/api/v1/returns?status=late", headers=token()).status_code == 422


def test_clearance_hides_returns(client, token, pump_events, outcomes_client):
    returns = issued_returns(client, token, pump_events, recipients=("GMP",), classification="OFFICIAL-SENSITIVE")
    low = token("GMP", "recipient", clearance="OFFICIAL")
    assert outcomes_client.get("/api/v1/returns", headers=low).get_json() == []
    assert outcomes_client.get(f"/api/v1/returns/{returns['GMP']}", headers=low).status_code == 404


def test_filing_reads_the_same_rows_however_long_the_history(returns, outcomes_client, outcomes_app, token):
    """Filing numbers its version from the locked return, never by loading every earlier
    version: the statements a filing runs, and the outcome rows it reads, do not grow with the
    history (what made filing slow down as a return was amended again and again)."""
    from sqlalchemy import event

    from services.outcomes.models import OutcomeReturn

    engine = outcomes_app.extensions["database"].engine
    statements: list[str] = []
    loaded: list[OutcomeReturn] = []

    def count_statement(_conn, _cursor, statement, *_args):
        statements.append(statement)

    def count_load(target, _context):
        loaded.append(target)

    rid = returns["GMP"]
    costs = {}
    for version in range(1, 13):
        statements.clear()
        loaded.clear()
        event.listen(engine, "before_cursor_execute", count_statement)
        event.listen(OutcomeReturn, "load", count_load)
        try:
            response = file(outcomes_client, token, rid, status="final", results={"arrests": version})
        finally:
            event.remove(engine, "before_cursor_execute", count_statement)
            event.remove(OutcomeReturn, "load", count_load)
        assert response.status_code == 201 and response.get_json()["version"] == version
        costs[version] = (len(statements), len(loaded))
    assert costs[12] == costs[2], costs  # the first filing also cancels the chase: compare from the 2nd
    assert costs[12][1] == 0, "a filing loaded earlier versions"
    view = outcomes_client.get(f"/api/v1/returns/{rid}", headers=token()).get_json()
    assert view["versions"] == 12 and view["current"]["results"]["arrests"] == 12
