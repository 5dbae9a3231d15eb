"""Every rule on an outcome return: one test each, naming the field, changing nothing."""

from __future__ import annotations

import pytest

from tests.outcomes.helpers import issued_returns, outcome_body


@pytest.fixture
def refused(client, token, pump_events, outcomes_client):
    rid = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]

    def post(body) -> dict:
        response = outcomes_client.post(f"/api/v1/returns/{rid}/outcomes", json=body, headers=token("GMP", "recipient"))
        assert response.status_code == 422, response.get_json()
        assert outcomes_client.get(f"/api/v1/returns/{rid}/outcomes", headers=token()).get_json() == []
        return response.get_json()["errors"]["json"]

    return post


def test_status_must_be_interim_or_final(refused):
    assert "status" in refused(outcome_body(status="done"))


def test_at_least_one_known_action(refused):
    assert "actions" in refused(outcome_body(actions=[]))
    assert "actions" in refused(outcome_body(actions=["arrested_everyone"]))
    assert "actions" in refused(outcome_body(actions=["enforcement", "enforcement"]))


def test_no_action_needs_a_reason_and_stands_alone(refused):
    assert "no_action_reason" in refused(outcome_body(actions=["no_action"], results={}, attribution=None))
    assert "actions" in refused(outcome_body(actions=["no_action", "enforcement"], no_action_reason="x"))


def test_passed_on_needs_a_known_other_organisation(refused):
    assert "passed_to" in refused(outcome_body(actions=["passed_on"]))
    assert "Unknown organisation" in refused(outcome_body(actions=["passed_on"], passed_to="NOPE"))["passed_to"][0]
    assert "other than your own" in refused(outcome_body(actions=["passed_on"], passed_to="GMP"))["passed_to"][0]


def test_priority_must_be_known_and_prioritised_work_names_its_forum(refused):
    assert "priority" in refused(outcome_body(priority="urgent"))
    assert "tasking_forum" in refused(outcome_body(priority="medium", tasking_forum=None))


@pytest.mark.parametrize(
    "field,value",
    [
        ("arrests", -1),
        ("arrests", 1.5),
        ("arrests", "3"),
        ("cash_seized_gbp", -0.01),
        ("drugs_seized_grams", "lots"),
        ("weapons_seized", None),
    ],
)
def test_results_are_non_negative_numbers(refused, field, value):
    assert field in refused(outcome_body(results={field: value}))["results"]


def test_unknown_result_fields_are_refused(refused):
    assert "cars_seized" in refused(outcome_body(results={"cars_seized": 1}))["results"]


def test_children_safeguarded_cannot_exceed_people_safeguarded(refused):
    errors = refused(outcome_body(results={"people_safeguarded": 1, "children_safeguarded": 2}))
    assert "children_safeguarded" in errors["results"]


def test_results_need_their_attribution(refused):
    assert "attribution" in refused(outcome_body(attribution=None))
    assert "attribution" in refused(outcome_body(attribution="indirect"))


def test_strands_are_the_4ps(refused):
    assert "strands" in refused(outcome_body(strands=["pursue", "punish"]))


@pytest.mark.parametrize(
    "feedback,field",
    [
        ({"usefulness": 0, "accuracy": "confirmed", "timeliness": "timely"}, "usefulness"),
        ({"usefulness": 6, "accuracy": "confirmed", "timeliness": "timely"}, "usefulness"),
        ({"usefulness": 3, "accuracy": "maybe", "timeliness": "timely"}, "accuracy"),
        ({"usefulness": 3, "accuracy": "false", "timeliness": "eventually"}, "timeliness"),
        ({"accuracy": "false", "timeliness": "timely"}, "usefulness"),
    ],
)
def test_intelligence_feedback_is_complete_and_in_range(refused, feedback, field):
    assert field in refused(outcome_body(intelligence_feedback=feedback))["intelligence_feedback"]


def test_intelligence_feedback_is_required(refused):
    assert "intelligence_feedback" in refused(outcome_body(intelligence_feedback=...))


def test_unknown_fields_are_refused(refused):
    assert refused(outcome_body(rating=5))["rating"] == ["Unknown field."]


def test_a_no_action_return_is_accepted_with_its_reason(client, token, pump_events, outcomes_client):
    rid = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    body = outcome_body(
        status="final",
        actions=["no_action"],
        no_action_reason="Subject already in custody.",
        priority="not_prioritised",
        tasking_forum=None,
        results={},
        attribution=None,
        strands=[],
    )
    response = outcomes_client.post(f"/api/v1/returns/{rid}/outcomes", json=body, headers=token("GMP", "recipient"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["results"]["arrests"] == 0
