"""Every headline figure (services/metrics/definitions.py, docs/figures.md), worked out by hand
from a small history built through the real services and their events, and checked to be the
same in the metrics API, on the dashboard and in the CSV export.

The history:

Package P (drugs supply) to ROCU-NW, MPS, WMP and CHESHIRE.
  ROCU-NW files an INTERIM return only: enforcement, and passed on to GMP; 1 arrest and 850 g
    of drugs, direct.
  GMP (ONWARD, from ROCU-NW's pass-on) files a final return: 2 arrests, direct; then AMENDS it:
    3 arrests, 2 weapons, £12,500 cash, 350 g of drugs worth £9,000. For the package these are
    "onward", whatever GMP called them, and only the amendment counts.
  MPS files a final return without acknowledging first: no action.
  CHESHIRE acknowledges, then files a final return: safeguarding; 2 people safeguarded, of them
    1 child, 1 safeguarding referral, 1 deal line closed, contributed.
  WMP does nothing.
Package W (firearms) to LANCS: LANCS files a final return (4 arrests), then the centre WITHDRAWS
  W: nothing of W counts anywhere.

Worked by hand (P alone counts; W is withdrawn):
  returns expected (recipients)  ROCU-NW, MPS, WMP, CHESHIRE, GMP                    = 5
  acknowledged                   ROCU-NW, MPS, GMP (filing counts), CHESHIRE (acked) = 4
  a return filed                 ROCU-NW, MPS, CHESHIRE, GMP                         = 4
  final returns                  MPS, CHESHIRE, GMP (ROCU-NW's is interim)           = 3
  final returns reporting action CHESHIRE (safeguarding), GMP (enforcement)          = 2
  return rate          final / expected          = 3 / 5 = 0.6    -> 60%
  on-time rate         on time / final           = 3 / 3 = 1.0    -> 100% (all filed at once)
  acknowledgement rate acknowledged / expected   = 4 / 5 = 0.8    -> 80%
  actioned rate        final actioned / final    = 2 / 3 = 0.6667 -> 67%
    (the old figure, every return reporting action over every return filed, interim included,
    was ROCU-NW + CHESHIRE + GMP over 4 = 75%)
  results        total   direct  contributed  onward
    arrests        4       1         0          3      (ROCU-NW 1; GMP's amendment 3, not 2 + 3)
    deal lines     1       0         1          0
    safeguarded    2       0         2          0      (of them 1 child, contributed)
    referrals      1       0         1          0
    drugs (g)   1200     850         0        350      -> "1.2 kg", "850 g", "350 g"
    drugs (£)   9000       0         0       9000      -> "£9,000"
    cash (£)   12500       0         0      12500      -> "£12,500"
    weapons        2       0         0          2
  median days to final return, CHESHIRE: its one final return came within the first hour after
    issue -> the middle of hour 0 = 0.5 / 24 = 0.02 days
  verdict of P: actioned, 3 of 5 recipients (ROCU-NW, CHESHIRE, GMP) acted on it, every result
    kind named.
"""

from __future__ import annotations

import csv
import io
import re

import pytest

from services.metrics import definitions
from tests.metrics.test_dashboard import card, raw, sign_in, text
from tests.onward.chain import carry, disseminations, file, pass_on

FIGURES = {  # the rates worked out above: (the summary's key, the value)
    "return_rate": ("returned", 0.6),
    "on_time_rate": ("on_time", 1.0),
    "acknowledged_rate": ("acknowledged", 0.8),
    "actioned_rate": ("actioned", 0.6667),
}
CARDS = {"return_rate": "return-rate", "on_time_rate": "on-time", "acknowledged_rate": "acknowledged"}
CARDS["actioned_rate"] = "actioned"
RESULTS = {  # kind: (total, direct, contributed, onward)
    "arrests": (4, 1, 0, 3),
    "charges": (0, 0, 0, 0),
    "warrants_executed": (0, 0, 0, 0),
    "deal_lines_closed": (1, 0, 1, 0),
    "people_safeguarded": (2, 0, 2, 0),
    "children_safeguarded": (1, 0, 1, 0),
    "safeguarding_referrals": (1, 0, 1, 0),
    "drugs_seized_grams": (1200, 850, 0, 350),
    "drugs_estimated_value_gbp": (9000, 0, 0, 9000),
    "cash_seized_gbp": (12500, 0, 0, 12500),
    "weapons_seized": (2, 0, 0, 2),
}
RESULT_WORDS = {  # as the dashboard shows them: total, direct, contributed, onward
    "arrests": ["4", "1", "0", "3"],
    "drugs_seized_grams": ["1.2 kg", "850 g", "0 g", "350 g"],
    "drugs_estimated_value_gbp": ["£9,000", "£0", "£0", "£9,000"],
    "cash_seized_gbp": ["£12,500", "£0", "£0", "£12,500"],
    "weapons_seized": ["2", "0", "0", "2"],
    "people_safeguarded": ["2", "0", "2", "0"],
}
VERDICT_REASON = (
    "3 of 5 recipients acted on it: 4 arrests, 1 deal line closed, 2 people safeguarded, 1 child safeguarded, "
    "1 safeguarding referral, 1.2 kg of drugs seized, drugs worth £9,000, £12,500 cash seized, 2 weapons seized."
)


def filed(outcomes_client, token, org, return_id, **changes) -> None:
    response = file(outcomes_client, token, org, return_id, **changes)
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def world(snapshot_world):
    return snapshot_world(build_world)


def build_world(client, token, app, outcomes_app, outcomes_client, metrics_app, pump_events, run_jobs):
    from tests.dissemination.helpers import issue_package

    p = issue_package(client, token(), recipients=["ROCU-NW", "MPS", "WMP", "CHESHIRE"], threat_area="drugs_supply")
    w = issue_package(client, token(), recipients=["LANCS"], threat_area="firearms")
    run_jobs()
    carry(pump_events, app, outcomes_app)
    ids = {org: row["id"] for org, row in disseminations(client, token, p["id"]).items()}
    lancs = disseminations(client, token, w["id"])["LANCS"]["id"]

    filed(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"],
          **pass_on("GMP", actions=["enforcement", "passed_on"],
                    results={"arrests": 1, "drugs_seized_grams": 850}, attribution="direct"))  # fmt: skip
    carry(pump_events, app, outcomes_app)
    run_jobs()
    ids = {org: row["id"] for org, row in disseminations(client, token, p["id"]).items()}
    filed(outcomes_client, token, "GMP", ids["GMP"], status="final", actions=["enforcement"],
          results={"arrests": 2}, attribution="direct")  # fmt: skip
    filed(outcomes_client, token, "GMP", ids["GMP"], status="final", actions=["enforcement"],
          results={"arrests": 3, "weapons_seized": 2, "cash_seized_gbp": 12500, "drugs_seized_grams": 350,
                   "drugs_estimated_value_gbp": 9000}, attribution="direct")  # fmt: skip
    filed(outcomes_client, token, "MPS", ids["MPS"], status="final", actions=["no_action"],
          no_action_reason="Already under investigation.", priority="not_prioritised", tasking_forum=None,
          results={}, attribution=None, strands=[])  # fmt: skip
    acknowledged = client.post(
        f"/api/v1/disseminations/{ids['CHESHIRE']}/acknowledge", headers=token("CHESHIRE", "recipient")
    )
    assert acknowledged.status_code == 200, acknowledged.get_json()
    filed(outcomes_client, token, "CHESHIRE", ids["CHESHIRE"], status="final", actions=["safeguarding"],
          results={"people_safeguarded": 2, "children_safeguarded": 1, "safeguarding_referrals": 1,
                   "deal_lines_closed": 1}, attribution="contributed", strands=["protect"])  # fmt: skip
    filed(outcomes_client, token, "LANCS", lancs, status="final", actions=["enforcement"],
          results={"arrests": 4}, attribution="direct")  # fmt: skip
    withdrawn = client.post(f"/api/v1/packages/{w['id']}/withdraw", json={"reason": "Superseded."}, headers=token())
    assert withdrawn.status_code == 200, withdrawn.get_json()
    carry(pump_events, app, outcomes_app)
    pump_events(source=app, target=metrics_app)
    pump_events(source=outcomes_app, target=metrics_app)
    return {"p": p, "w": w}


def leader(token):
    return token("NCLCC", "leader")


def the_csv(metrics_client, token) -> dict[str, dict]:
    response = metrics_client.get("/api/v1/metrics/export.csv", headers=leader(token))
    assert response.status_code == 200
    return {row["reference"]: row for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}


def dashboard(metrics_client, token) -> str:
    assert sign_in(metrics_client, raw(leader(token))).status_code == 303
    response = metrics_client.get("/dashboard")
    assert response.status_code == 200
    return text(response)


def result_cells(page: str, kind: str) -> list[str]:
    row = re.search(rf'<tr id="result-{kind}">(.*?)</tr>', page, re.S)
    assert row, f"no result row {kind}"
    return re.findall(r"<td[^>]*>([^<]*)</td>", row[1])


def test_the_rates_are_the_same_in_the_api_the_dashboard_and_the_csv(world, metrics_client, token):
    summary = metrics_client.get("/api/v1/metrics/summary", headers=leader(token)).get_json()
    package = metrics_client.get(f"/api/v1/metrics/packages/{world['p']['id']}", headers=leader(token)).get_json()
    row = the_csv(metrics_client, token)[world["p"]["reference"]]
    page = dashboard(metrics_client, token)
    assert summary["packages_issued"] == 1  # W was withdrawn
    # The funnel: no stage counts more than the one before it (filing counts as acknowledgement).
    assert summary["funnel"] == {
        "recipients": 5,
        "delivered": 5,
        "acknowledged": 4,
        "returned": 4,
        "final": 3,
        "actioned": 2,
    }
    assert (package["reach"]["acknowledged"], package["compliance"]["final"], package["actioned_returns"]) == (4, 3, 2)
    assert (row["recipients"], row["acknowledged"], row["final_returns"], row["actioned_returns"]) == (
        "5",
        "4",
        "3",
        "2",
    )
    for figure in definitions.RATES:
        key, value = FIGURES[figure.name]
        assert summary["rates"][key] == value, figure.name
        assert package["rates"][figure.name] == value, figure.name
        assert float(row[figure.name]) == value, figure.name
        assert card(page, CARDS[figure.name]) == f"{round(value * 100)}%", figure.name
        assert figure.definition in page, figure.name  # each figure's definition beside it
    assert "2 of 3 final returns report action" in page  # the actioned card's caption
    assert "4 of 5 acknowledged" in page and "3 of 5 final returns in" in page


def test_results_by_kind_and_attribution_are_the_same_everywhere(world, metrics_client, token):
    summary = metrics_client.get("/api/v1/metrics/summary", headers=leader(token)).get_json()["results"]
    package = metrics_client.get(f"/api/v1/metrics/packages/{world['p']['id']}", headers=leader(token)).get_json()
    row = the_csv(metrics_client, token)[world["p"]["reference"]]
    page = dashboard(metrics_client, token)
    for kind, (total, direct, contributed, onward) in RESULTS.items():
        for results in (summary, package["results"]):
            found = [results[part][kind] for part in ("totals", "direct", "contributed", "onward")]
            assert found == [total, direct, contributed, onward], kind
            assert all(isinstance(value, int) for value in found), kind  # never 2.0
        columns = [kind, f"{kind}_direct", f"{kind}_contributed", f"{kind}_onward"]
        assert [row[column] for column in columns] == [str(total), str(direct), str(contributed), str(onward)]
        if kind in RESULT_WORDS:
            assert result_cells(page, kind) == RESULT_WORDS[kind], kind
    assert card(page, "arrests") == "4"
    assert definitions.RESULTS_DEFINITION in page


def test_the_verdict_names_every_result_kind(world, metrics_client, token):
    package = metrics_client.get(f"/api/v1/metrics/packages/{world['p']['id']}", headers=leader(token)).get_json()
    exported = the_csv(metrics_client, token)
    page = dashboard(metrics_client, token)
    assert package["verdict"] == "actioned" and package["verdict_reason"] == VERDICT_REASON
    assert exported[world["p"]["reference"]]["verdict_reason"] == VERDICT_REASON
    assert VERDICT_REASON in page
    # The withdrawn package counts nothing, whatever was filed on it before.
    withdrawn = exported[world["w"]["reference"]]
    assert withdrawn["verdict_reason"] == "Withdrawn by the centre."
    assert (withdrawn["recipients"], withdrawn["final_returns"], withdrawn["arrests"]) == ("0", "0", "0")
    assert withdrawn["return_rate"] == ""  # nothing expected: no rate, not 0%


def test_median_days_to_final_return_is_the_same_in_the_api_and_on_the_page(world, metrics_client, token):
    cheshire = metrics_client.get("/api/v1/metrics/organisations/CHESHIRE", headers=leader(token)).get_json()
    wmp = metrics_client.get("/api/v1/metrics/organisations/WMP", headers=leader(token)).get_json()
    assert cheshire["median_days_to_return"] == 0.02 and wmp["median_days_to_return"] is None
    assert (cheshire["actioned_rate"], cheshire["acknowledged_rate"], cheshire["final_actioned"]) == (1.0, 1.0, 1)
    page = dashboard(metrics_client, token)
    assert re.search(r"\(CHESHIRE\)</th>(<td>[^<]*</td>){3}<td>0\.02</td>", page)
    assert re.search(r"\(WMP\)</th>(<td>[^<]*</td>){3}<td>—</td>", page)
    assert definitions.MEDIAN_DAYS_TO_FINAL_RETURN in page


def test_the_grading_grid_says_how_many_judged_and_when_none_did(world, metrics_client, token):
    # outcome_body's default feedback judges the intelligence "confirmed": ROCU-NW, GMP and CHESHIRE
    # said so of P (graded 2B by default); MPS and LANCS too, but W is withdrawn.
    page = dashboard(metrics_client, token)
    assert "not yet judged" in page and "none judged" not in page
    assert re.search(r"\d+ of \d+ judged confirmed", page)


@pytest.mark.parametrize(
    ("grams", "words"), [(0, "0 g"), (850, "850 g"), (120.5, "120.5 g"), (1000, "1 kg"), (1200, "1.2 kg")]
)
def test_drugs_read_in_grams_or_kilograms(grams, words):
    drugs = next(kind for kind in definitions.RESULT_KINDS if kind.name == "drugs_seized_grams")
    assert definitions.amount_words(drugs, grams) == words


def test_judged_words():
    assert definitions.judged_words(0, 1) == "0 of 1 judged confirmed"
    assert definitions.judged_words(0, 0) == "not yet judged"
