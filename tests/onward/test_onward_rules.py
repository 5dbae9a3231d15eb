"""The rules of passing on, as the web form and events meet them: loops and chains too deep are
refused on the form as by the API (one definition), and events out of order or that slipped
past the rules change nothing they should not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.onward.chain import carry, deepen, deliver, disseminations, file, outbox_messages, pass_on, start
from tests.outcomes.form_helpers import csrf_token_of, error_links, form_data, form_path, outcomes_of, page_text


def test_the_form_refuses_a_loop_and_a_chain_too_deep_naming_passed_to(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    ids = deepen(client, token, app, outcomes_app, outcomes_client, pump_events, world)
    cases = [
        ("ROCU-NW", "MPS", "MPS already holds this package"),
        ("GMP", "ROCU-NW", "ROCU-NW already holds this package"),
        ("GMP", "NCLCC", "NCLCC issued this package"),
        ("CHESHIRE", "MERSEY", "already been passed on 3 times"),
    ]
    for org, to, words in cases:
        path = form_path(outcomes_client, token, ids[org], org=org)
        csrf = csrf_token_of(outcomes_client.get(path))
        before = outcomes_of(outcomes_client, token, ids[org], org=org)
        response = outcomes_client.post(
            path, data=form_data(csrf, actions=["passed_on"], passed_to=to, based_on=str(len(before)))
        )
        assert response.status_code == 422, (org, to)
        assert error_links(response) == ["passed-to"], (org, to)
        assert words in page_text(response), (org, to)
        assert outcomes_of(outcomes_client, token, ids[org], org=org) == before
    # Nothing was passed on by the refusals.
    carry(pump_events, app, outcomes_app)
    assert len(disseminations(client, token, world["package"]["id"])) == 5


def test_the_api_and_the_form_give_the_same_refusal(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    gmp = world["ids"]["GMP"]
    api = file(outcomes_client, token, "GMP", gmp, **pass_on("MPS")).get_json()["errors"]["json"]["passed_to"][0]
    path = form_path(outcomes_client, token, gmp)
    page = outcomes_client.post(
        path, data=form_data(csrf_token_of(outcomes_client.get(path)), actions=["passed_on"], passed_to="MPS")
    )
    assert api.rstrip(".") in page_text(page)


def test_an_older_filing_arriving_after_a_newer_one_changes_nothing(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    """ROCU-NW passes it to GMP, then amends to LANCS before any event has moved; the relay
    delivers the amendment first. GMP must not get the package when the first filing arrives late."""
    from tests.dissemination.helpers import issue_package
    from tests.onward.chain import returns_of

    package = issue_package(client, token(), recipients=["ROCU-NW", "MPS"])
    carry(pump_events, app, outcomes_app)
    rocu = disseminations(client, token, package["id"])["ROCU-NW"]["id"]
    assert file(outcomes_client, token, "ROCU-NW", rocu, **pass_on("GMP")).status_code == 201
    assert file(outcomes_client, token, "ROCU-NW", rocu, **pass_on("LANCS")).status_code == 201
    filed = [m for m in outbox_messages(outcomes_app) if m["type"] == "outcome.filed"]
    assert [m["payload"]["version"] for m in filed] == [1, 2]
    assert [deliver(app, m) for m in reversed(filed)] == ["applied", "applied"]
    rows = disseminations(client, token, package["id"])
    assert set(rows) == {"ROCU-NW", "MPS", "LANCS"}
    carry(pump_events, app, outcomes_app)  # the rest, and these two again: duplicates
    assert set(disseminations(client, token, package["id"])) == {"ROCU-NW", "MPS", "LANCS"}
    assert set(returns_of(outcomes_client, token, package["id"])) == {"ROCU-NW", "MPS", "LANCS"}


def test_a_pass_on_that_slipped_past_the_rules_does_nothing(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    """Events that name an organisation holding the package already (two pass-ons to one
    organisation at once), one not in the directory, or a return the service never made: each
    is applied and changes nothing."""
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    before = disseminations(client, token, package["id"])
    for return_id, passed_to in ((ids["MPS"], "GMP"), (ids["MPS"], "NO-SUCH-ORG"), (str(uuid.uuid4()), "LANCS")):
        message = {
            "id": str(uuid.uuid4()),
            "type": "outcome.filed",
            "source": "outcomes",
            "aggregate_id": return_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "payload": {
                "return_id": return_id,
                "package_id": package["id"],
                "status": "interim",
                "version": 1,
                "filed_at": datetime.now(UTC).isoformat(),
                "outcome": {"actions": ["passed_on"], "passed_to": passed_to},
            },
        }
        assert deliver(app, message) == "applied"
    after = disseminations(client, token, package["id"])
    assert set(after) == set(before)


def test_hostile_pass_on_answers_are_4xx_and_change_nothing(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    gmp = world["ids"]["GMP"]
    for passed_to in ("LANCS\u0000", "X" * 17, "lancs", "'; DROP TABLE--", ["LANCS"], 7, {"code": "LANCS"}):
        response = file(outcomes_client, token, "GMP", gmp, **pass_on(passed_to))
        assert response.status_code == 422, passed_to
        assert "passed_to" in response.get_json()["errors"]["json"], passed_to
    assert outcomes_of(outcomes_client, token, gmp) == []
    centre = token()
    assert client.get("/api/v1/packages/not-a-uuid/chain", headers=centre).status_code == 404
    assert client.get(f"/api/v1/packages/{uuid.uuid4()}/chain", headers=centre).status_code == 404
    assert client.get(f"/api/v1/packages/{world['package']['id']}/chain?x=1", headers=centre).status_code == 422
