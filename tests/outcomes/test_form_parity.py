"""The web form and the API take the same answers and refuse the same ones, naming the same
fields: each case of the table is sent as JSON to the API and, written as the form's fields (by
this test, not by the form's own code), to the form. Where both accept, both file the same return.
"""

from __future__ import annotations

from services.outcomes.form_wording import field_id
from tests.outcomes.form_helpers import (
    csrf_token_of,
    error_links,
    form_path,
    hidden_value,
    is_check_page,
    outcomes_of,
    page_text,
)
from tests.outcomes.helpers import issued_returns, outcome_body

NO_RESULTS = {"results": {}, "attribution": None}
NO_ACTION = {
    "actions": ["no_action"],
    "no_action_reason": "Subject already in custody.",
    "priority": "not_prioritised",
    "tasking_forum": None,
    "strands": [],
    **NO_RESULTS,
}

# (what the case shows, changes to outcome_body(), the fields refused: none when accepted)
CASES = [
    ("a complete interim return", {}, set()),
    ("no action, with its reason", NO_ACTION, set()),
    ("passed on to another organisation", {"actions": ["passed_on"], "passed_to": "MPS", **NO_RESULTS}, set()),
    ("an organisation named without passing it on is not read", {"passed_to": "NOT-AN-ORGANISATION"}, set()),
    ("a reason given without 'no action' is not read", {"no_action_reason": "x" * 5000}, set()),
    (
        "as many children as people safeguarded",
        {"results": {"people_safeguarded": 2, "children_safeguarded": 2}},
        set(),
    ),
    ("a forum named for work not prioritised", {"priority": "not_prioritised", "tasking_forum": "Weekly"}, set()),
    ("no results, so no attribution", NO_RESULTS, set()),
    ("results of zero need no attribution", {"results": {"arrests": 0}, "attribution": None}, set()),
    ("an unknown status", {"status": "done"}, {"status"}),
    ("no action ticked", {"actions": []}, {"actions"}),
    ("no action with another action", {"actions": ["no_action", "enforcement"], "no_action_reason": "x"}, {"actions"}),
    ("no action without its reason", {**NO_ACTION, "no_action_reason": None}, {"no_action_reason"}),
    ("a reason for no action that is too long", {**NO_ACTION, "no_action_reason": "x" * 4001}, {"no_action_reason"}),
    ("passed on without saying to whom", {"actions": ["passed_on"], **NO_RESULTS}, {"passed_to"}),
    ("passed on to an unknown organisation", {"actions": ["passed_on"], "passed_to": "NOPE"}, {"passed_to"}),
    ("passed on to its own organisation", {"actions": ["passed_on"], "passed_to": "GMP"}, {"passed_to"}),
    ("an unknown priority", {"priority": "urgent"}, {"priority"}),
    ("prioritised without its forum", {"priority": "medium", "tasking_forum": None}, {"tasking_forum"}),
    ("a negative count", {"results": {"arrests": -1}}, {"results.arrests"}),
    ("a count that is not whole", {"results": {"arrests": 1.5}}, {"results.arrests"}),
    ("an amount that is not a number", {"results": {"drugs_seized_grams": "lots"}}, {"results.drugs_seized_grams"}),
    ("an amount too large", {"results": {"cash_seized_gbp": 1e11}}, {"results.cash_seized_gbp"}),
    (
        "more children than people safeguarded",
        {"results": {"people_safeguarded": 1, "children_safeguarded": 2}},
        {"results.children_safeguarded"},
    ),
    ("results without their attribution", {"attribution": None}, {"attribution"}),
    ("an unknown attribution", {"attribution": "indirect"}, {"attribution"}),
    ("an unknown strand", {"strands": ["pursue", "punish"]}, {"strands"}),
    (
        "usefulness out of range",
        {"intelligence_feedback": {"usefulness": 6, "accuracy": "confirmed", "timeliness": "timely"}},
        {"intelligence_feedback.usefulness"},
    ),
    (
        "accuracy and timeliness not offered",
        {"intelligence_feedback": {"usefulness": 3, "accuracy": "maybe", "timeliness": "eventually"}},
        {"intelligence_feedback.accuracy", "intelligence_feedback.timeliness"},
    ),
    ("comments too long", {"comments": "x" * 10001}, {"comments"}),
    # Rules across fields beside field errors, all in one answer.
    (
        "a wrong count, more children than people, results unattributed, priority without forum",
        {
            "results": {"arrests": -1, "people_safeguarded": 2, "children_safeguarded": 3},
            "attribution": None,
            "priority": "medium",
            "tasking_forum": None,
        },
        {"results.arrests", "results.children_safeguarded", "attribution", "tasking_forum"},
    ),
    (
        "no action and passed on, with neither reason nor organisation",
        {"actions": ["no_action", "passed_on"], **NO_RESULTS},
        {"actions", "no_action_reason", "passed_to"},
    ),
    (
        "a figure that is not a number still asks for its attribution",
        {"results": {"weapons_seized": "two"}, "attribution": None, "status": "closed"},
        {"results.weapons_seized", "attribution", "status"},
    ),
    (
        "a forum too long is not also missing",
        {"priority": "high", "tasking_forum": "x" * 201, "strands": ["punish"]},
        {"tasking_forum", "strands"},
    ),
]


def as_form_fields(body: dict, csrf: str, versions_shown: int = 0) -> dict:
    """The JSON body as a person would enter it in the form (every text box as text)."""
    data: dict = {"csrf_token": csrf, "based_on": str(versions_shown), "filer_name": "Sam Patel", "filer_role": "DS"}
    for key, value in body.items():
        if isinstance(value, dict):
            data.update({f"{key}.{name}": _as_typed(item) for name, item in value.items()})
        elif isinstance(value, list):
            data[key] = value
        else:
            data[key] = _as_typed(value)
    return data


def _as_typed(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def api_error_fields(errors: dict, prefix: str = "") -> set[str]:
    fields: set[str] = set()
    for key, value in errors.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and not all(isinstance(k, int) or k.isdigit() for k in value):
            fields |= api_error_fields(value, name)
        else:
            fields.add(name)  # a list's item errors belong to the list
    return fields


FILED_THE_SAME = ("status", "actions", "no_action_reason", "passed_to", "priority", "tasking_forum", "results")
FILED_THE_SAME += ("attribution", "strands", "intelligence_feedback", "comments")


def test_the_form_accepts_and_refuses_what_the_api_does(client, token, pump_events, outcomes_client):
    api_return = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    form_return = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    path = form_path(outcomes_client, token, form_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    filed = 0
    for name, changes, refused in CASES:
        body = outcome_body(**changes)
        api = outcomes_client.post(
            f"/api/v1/returns/{api_return}/outcomes", json=body, headers=token("GMP", "recipient")
        )
        form = outcomes_client.post(path, data=as_form_fields(body, csrf, versions_shown=filed))
        if not refused:
            assert api.status_code == 201, (name, api.get_json())
            assert is_check_page(form), (name, page_text(form)[:1500])
            sent = outcomes_client.post(
                f"{path}/send", data={"csrf_token": csrf, "answers": hidden_value(form, "answers")}
            )
            assert sent.status_code == 303, name
            filed += 1
            by_api, by_form = (
                outcomes_of(outcomes_client, token, api_return)[-1],
                outcomes_of(outcomes_client, token, form_return)[-1],
            )
            assert {k: by_api[k] for k in FILED_THE_SAME} == {k: by_form[k] for k in FILED_THE_SAME}, name
            continue
        assert api.status_code == 422, (name, api.get_json())
        assert api_error_fields(api.get_json()["errors"]["json"]) == refused, name
        assert form.status_code == 422, (name, page_text(form)[:1500])
        assert set(error_links(form)) == {field_id(key) for key in refused}, name
    assert filed == sum(1 for _, _, refused in CASES if not refused)
    assert len(outcomes_of(outcomes_client, token, form_return)) == filed


def test_after_a_final_return_both_refuse_an_interim_one(client, token, pump_events, outcomes_client):
    api_return = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    form_return = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    for return_id in (api_return, form_return):
        final = outcomes_client.post(
            f"/api/v1/returns/{return_id}/outcomes",
            json=outcome_body(status="final"),
            headers=token("GMP", "recipient"),
        )
        assert final.status_code == 201
    body = outcome_body(status="interim")
    api = outcomes_client.post(f"/api/v1/returns/{api_return}/outcomes", json=body, headers=token("GMP", "recipient"))
    assert api.status_code == 422 and set(api.get_json()["errors"]["json"]) == {"status"}
    path = form_path(outcomes_client, token, form_return)
    form = outcomes_client.post(path, data=as_form_fields(body, csrf_token_of(outcomes_client.get(path)), 1))
    assert form.status_code == 422 and error_links(form) == ["status"]
