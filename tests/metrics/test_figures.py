"""Each figure computed from the hand-checked history in scenario.py."""

from __future__ import annotations

import pytest

from tests.metrics import scenario


@pytest.fixture
def history(snapshot_world):
    return snapshot_world(scenario.history)


def leader(token):
    return token("NCLCC", "leader")


def test_package_figures(history, metrics_client, token):
    body = metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=leader(token)).get_json()
    assert body["reach"]["recipients"] == 3 and body["reach"]["delivered"] == 3
    # GMP acknowledged; MPS filed a return, which counts as acknowledgement; WMP did neither.
    assert body["reach"]["acknowledged"] == 2 and body["reach"]["failed"] == 0
    assert body["reach"]["median_hours_to_acknowledge"] is not None
    compliance = body["compliance"]
    assert (
        compliance["expected"],
        compliance["interim"],
        compliance["final"],
        compliance["on_time"],
        compliance["overdue_now"],
    ) == (3, 0, 2, 2, 1)
    assert body["use"]["by_action"]["enforcement"] == 1 and body["use"]["by_action"]["no_action"] == 1
    assert body["use"]["by_priority"] == {"high": 1, "medium": 0, "low": 0, "not_prioritised": 1}
    assert body["use"]["by_strand"]["pursue"] == 1
    # The amendment replaced the earlier outcomes: 5 arrests, not 3 + 4 + 5.
    assert body["results"]["totals"]["arrests"] == 5 and body["results"]["direct"]["arrests"] == 5
    assert body["results"]["totals"]["charges"] == 2 and body["results"]["contributed"]["arrests"] == 0
    assert body["quality"]["mean_usefulness"] == 3.0  # (4 + 2) / 2
    assert body["quality"]["accuracy"]["confirmed"] == 1 and body["quality"]["accuracy"]["not_confirmed"] == 1
    assert body["verdict"] == "actioned"
    assert "1 of 3 recipients acted on it: 5 arrests, 2 charges." in body["verdict_reason"]
    assert "1 return overdue" in body["verdict_reason"]


def test_verdicts_of_every_package(history, metrics_client, token):
    rows = metrics_client.get("/api/v1/metrics/packages?sort=reference", headers=leader(token)).get_json()
    verdicts = {row["reference"]: row["verdict"] for row in rows}
    assert verdicts == {
        history["a"]["reference"]: "actioned",
        history["b"]["reference"]: "no_action",
        history["c"]["reference"]: "actioned",
    }
    withdrawn = next(r for r in rows if r["reference"] == history["b"]["reference"])
    assert withdrawn["verdict_reason"] == "Withdrawn by the centre."
    only_actioned = metrics_client.get(
        "/api/v1/metrics/packages?verdict=actioned&threat_area=county_lines", headers=leader(token)
    ).get_json()
    assert len(only_actioned) == 2


def test_organisation_figures(history, metrics_client, token):
    mps = metrics_client.get("/api/v1/metrics/organisations/MPS", headers=leader(token)).get_json()
    assert mps["packages_received"] == 2 and mps["returned"] == 2 and mps["return_rate"] == 1.0
    assert mps["on_time_rate"] == 1.0 and mps["actioned_rate"] == 0.5 and mps["overdue_now"] == 0
    assert mps["median_days_to_return"] is not None and mps["median_days_to_return"] < 1
    assert mps["results"]["totals"]["children_safeguarded"] == 1
    wmp = metrics_client.get("/api/v1/metrics/organisations/WMP", headers=leader(token)).get_json()
    assert (wmp["packages_received"], wmp["returned"], wmp["return_rate"], wmp["overdue_now"]) == (1, 0, 0.0, 1)
    gmp = metrics_client.get("/api/v1/metrics/organisations/GMP", headers=leader(token)).get_json()
    assert gmp["packages_received"] == 1  # the withdrawn package does not count
    listed = metrics_client.get("/api/v1/metrics/organisations", headers=leader(token)).get_json()
    assert {row["code"] for row in listed} == {"GMP", "MPS", "WMP"}


def test_summary_funnel_results_and_trend(history, metrics_client, token):
    body = metrics_client.get("/api/v1/metrics/summary", headers=leader(token)).get_json()
    assert body["packages_issued"] == 2  # B was withdrawn
    assert body["funnel"] == {
        "recipients": 4,
        "delivered": 4,
        "acknowledged": 3,  # GMP acknowledged A; MPS filed on A and on C (filing counts)
        "returned": 3,
        "final": 3,
        "actioned": 2,  # final returns reporting action: GMP on A, MPS on C
    }
    assert body["results"]["totals"]["arrests"] == 5 and body["results"]["totals"]["people_safeguarded"] == 1
    this_month = body["trend"][-1]
    assert this_month["recipients"] == 4 and this_month["arrests"] == 5
    county = metrics_client.get("/api/v1/metrics/summary?threat_area=firearms", headers=leader(token)).get_json()
    assert county["funnel"]["recipients"] == 0
    wmp = metrics_client.get("/api/v1/metrics/summary?organisation=WMP", headers=leader(token)).get_json()
    assert wmp["funnel"]["recipients"] == 1 and wmp["funnel"]["final"] == 0


def test_grading_calibration(history, metrics_client, token):
    cells = metrics_client.get("/api/v1/metrics/grading", headers=leader(token)).get_json()["cells"]
    two_b = next(c for c in cells if c["source_evaluation"] == 2 and c["intelligence_assessment"] == "B")
    assert (two_b["judged"], two_b["confirmed"], two_b["partly_confirmed"], two_b["not_confirmed"]) == (3, 1, 1, 1)
    assert two_b["confirmed_rate"] == round(2 / 3, 4)
    assert len(cells) == 15 and sum(c["judged"] for c in cells) == 3


def test_csv_export_has_the_package_list(history, metrics_client, token):
    response = metrics_client.get("/api/v1/metrics/export.csv?threat_area=county_lines", headers=leader(token))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("reference,title,threat_area")
    assert len(lines) == 3 and all("county_lines" in line for line in lines[1:])


def test_redelivered_and_reordered_events_change_nothing(
    history, metrics_client, metrics_app, token, app, outcomes_app
):
    from sqlalchemy import select

    from shared.inbox import apply_event

    before = metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=leader(token)).get_json()
    service = metrics_app.extensions["service"]
    for source in (outcomes_app, app):
        models = source.extensions["service"].models
        session = source.extensions["database"].session()
        events = session.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.position.desc())).all()
        messages = [e.as_message(source.extensions["service"].name) for e in events]
        session.close()
        target = metrics_app.extensions["database"].session()
        assert {apply_event(target, service.models, service.event_handlers, m) for m in messages} == {"duplicate"}
        target.close()
    after = metrics_client.get(f"/api/v1/metrics/packages/{history['a']['id']}", headers=leader(token)).get_json()
    assert after == before


def test_roles(history, metrics_client, token):
    gmp = token("GMP", "recipient")
    assert metrics_client.get("/api/v1/metrics/organisations/GMP", headers=gmp).status_code == 200
    assert metrics_client.get("/api/v1/metrics/organisations/MPS", headers=gmp).status_code == 403
    own = metrics_client.get("/api/v1/metrics/summary", headers=gmp).get_json()
    assert own["organisation"] == "GMP" and own["funnel"]["recipients"] == 1
    assert metrics_client.get("/api/v1/metrics/summary?organisation=MPS", headers=gmp).status_code == 403
    for url in (
        "/api/v1/metrics/packages",
        f"/api/v1/metrics/packages/{history['a']['id']}",
        "/api/v1/metrics/organisations",
        "/api/v1/metrics/grading",
        "/api/v1/metrics/export.csv",
    ):
        assert metrics_client.get(url, headers=gmp).status_code == 403, url
        assert metrics_client.get(url, headers=token()).status_code == 403, url  # an issuer is not leadership
    assert metrics_client.get("/api/v1/metrics/summary", headers=token()).status_code == 403


def test_bad_queries_are_4xx(history, metrics_client, token):
    for query in ("from=2026-13", "from=2026-05&to=2026-01", "threat_area=burglary", "sort=colour", "verdict=great"):
        url = (
            "/api/v1/metrics/packages?" + query
            if "sort" in query or "verdict" in query
            else "/api/v1/metrics/summary?" + query
        )
        response = metrics_client.get(url, headers=leader(token))
        assert response.status_code == 422, (query, response.get_json())
    assert metrics_client.get("/api/v1/metrics/packages/not-a-uuid", headers=leader(token)).status_code == 404
    assert metrics_client.get("/api/v1/metrics/organisations/NOPE", headers=leader(token)).status_code == 404
