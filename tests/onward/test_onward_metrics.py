"""Results along a pass-on count toward the original package once, marked ``onward``.

Hand-worked: the package goes to ROCU-NW and MPS.
  ROCU-NW: interim, enforcement and passed on to GMP, 1 arrest (direct).
  GMP (onward): final, 4 arrests and 2 charges (GMP calls them direct; for the package they are onward).
  MPS: final, 2 arrests (contributed).
  -> arrests 7 = direct 1 + contributed 2 + onward 4; charges 2, all onward.
GMP amends to 5 arrests -> 8 (the amendment replaces: not 12).
ROCU-NW amends: it passed it to LANCS, not GMP -> GMP's return is withdrawn and its 5 stop
counting -> 3; LANCS files 3 arrests -> 6, onward 3.
"""

from __future__ import annotations

import csv
import io

from tests.onward.chain import carry, deliver, disseminations, file, outbox_messages, pass_on, start


def to_metrics(pump_events, app, outcomes_app, metrics_app) -> None:
    pump_events(source=app, target=metrics_app)
    pump_events(source=outcomes_app, target=metrics_app)


def package_results(metrics_client, token, package_id: str) -> dict:
    response = metrics_client.get(f"/api/v1/metrics/packages/{package_id}", headers=token("NCLCC", "leader"))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_onward_results_count_toward_the_package_once(
    client, token, app, outcomes_app, outcomes_client, metrics_app, metrics_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    assert file(outcomes_client, token, "GMP", ids["GMP"], status="final", actions=["enforcement"],
                results={"arrests": 4, "charges": 2}, attribution="direct").status_code == 201  # fmt: skip
    assert file(outcomes_client, token, "MPS", ids["MPS"], status="final", actions=["enforcement"],
                results={"arrests": 2}, attribution="contributed").status_code == 201  # fmt: skip
    carry(pump_events, app, outcomes_app)
    to_metrics(pump_events, app, outcomes_app, metrics_app)

    body = package_results(metrics_client, token, package["id"])
    results = body["results"]
    assert results["totals"]["arrests"] == 7
    assert (results["direct"]["arrests"], results["contributed"]["arrests"], results["onward"]["arrests"]) == (1, 2, 4)
    assert (results["totals"]["charges"], results["direct"]["charges"], results["onward"]["charges"]) == (2, 0, 2)
    assert (body["arrests"], body["onward_arrests"], body["onward_recipients"], body["recipients"]) == (7, 4, 1, 3)
    by_recipient = {r["organisation"]: r for r in body["by_recipient"]}
    assert by_recipient["GMP"]["onward_from"] == ids["ROCU-NW"] and by_recipient["MPS"]["onward_from"] is None

    # An amendment replaces GMP's figures: 5 arrests, not 4 + 5.
    assert file(outcomes_client, token, "GMP", ids["GMP"], status="final", actions=["enforcement"],
                results={"arrests": 5, "charges": 2}, attribution="direct").status_code == 201  # fmt: skip
    to_metrics(pump_events, app, outcomes_app, metrics_app)
    results = package_results(metrics_client, token, package["id"])["results"]
    assert (results["totals"]["arrests"], results["onward"]["arrests"]) == (8, 5)

    # Every event delivered again (a relay retried): nothing is counted twice.
    assert _redeliver_all(app, outcomes_app, metrics_app) == {"duplicate"}
    assert package_results(metrics_client, token, package["id"])["results"] == results

    # ROCU-NW amends: it was passed to LANCS, not GMP. GMP's return is withdrawn: its results stop counting.
    assert file(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"],
                **pass_on("LANCS", actions=["enforcement", "passed_on"], results={"arrests": 1},
                          attribution="direct")).status_code == 201  # fmt: skip
    carry(pump_events, app, outcomes_app)
    to_metrics(pump_events, app, outcomes_app, metrics_app)
    body = package_results(metrics_client, token, package["id"])
    results = body["results"]
    assert (results["totals"]["arrests"], results["onward"]["arrests"], results["onward"]["charges"]) == (3, 0, 0)
    assert {r["organisation"]: r["status"] for r in body["by_recipient"]}["GMP"] == "withdrawn"
    assert (body["recipients"], body["onward_recipients"]) == (3, 1)  # ROCU-NW, MPS and LANCS

    lancs = disseminations(client, token, package["id"])["LANCS"]["id"]
    assert file(outcomes_client, token, "LANCS", lancs, status="final", actions=["enforcement"],
                results={"arrests": 3}, attribution="contributed").status_code == 201  # fmt: skip
    carry(pump_events, app, outcomes_app)
    to_metrics(pump_events, app, outcomes_app, metrics_app)
    body = package_results(metrics_client, token, package["id"])
    results = body["results"]
    assert (results["totals"]["arrests"], results["direct"]["arrests"]) == (6, 1)
    assert (results["contributed"]["arrests"], results["onward"]["arrests"]) == (2, 3)
    assert (body["arrests"], body["onward_arrests"]) == (6, 3)

    # The summary and the CSV say so too.
    leader = token("NCLCC", "leader")
    summary = metrics_client.get("/api/v1/metrics/summary", headers=leader).get_json()
    assert (summary["results"]["totals"]["arrests"], summary["results"]["onward"]["arrests"]) == (6, 3)
    lancs_figures = metrics_client.get("/api/v1/metrics/organisations/LANCS", headers=leader).get_json()
    assert lancs_figures["results"]["onward"]["arrests"] == 3
    exported = metrics_client.get("/api/v1/metrics/export.csv", headers=leader).get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert (row["arrests"], row["arrests_onward"], row["onward_recipients"]) == ("6", "3", "1")


def test_a_late_package_issued_still_marks_the_return_onward(
    client, token, app, outcomes_app, outcomes_client, metrics_app, metrics_client, pump_events, run_jobs
):
    """The metrics service may hear of GMP's return before the event that made it: the return's
    own event says it is onward, and the counting comes out the same."""
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    assert file(outcomes_client, token, "GMP", ids["GMP"], status="final", actions=["enforcement"],
                results={"arrests": 4}, attribution="direct").status_code == 201  # fmt: skip
    pump_events(source=outcomes_app, target=metrics_app)  # the returns first
    pump_events(source=app, target=metrics_app)
    results = package_results(metrics_client, token, package["id"])["results"]
    assert (results["totals"]["arrests"], results["onward"]["arrests"], results["direct"]["arrests"]) == (5, 4, 1)


def _redeliver_all(app, outcomes_app, metrics_app) -> set[str]:
    return {deliver(metrics_app, message) for source in (app, outcomes_app) for message in outbox_messages(source)}
