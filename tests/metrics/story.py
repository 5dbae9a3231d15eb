"""A package's whole story, made through the real dissemination and outcomes services, for the
package and organisation pages (test_drilldown.py):

Package T (drugs supply, OFFICIAL-SENSITIVE, graded 2B) to ROCU-NW, MPS and WMP.
  ROCU-NW acknowledges it; files an INTERIM return passing it on to LANCS (enforcement, 1 arrest,
    direct); then its FINAL return (enforcement, still passed on to LANCS, 2 arrests, direct).
  LANCS (ONWARD, from ROCU-NW) files a final return: 3 arrests, direct; then AMENDS it: 4 arrests
    and 1 weapon seized. Toward the package these count as "onward".
  MPS files an interim return passing it on to CHESHIRE, then a final one: no action ("Already
    under investigation."), which WITHDRAWS the dissemination to CHESHIRE.
  WMP has its due date EXTENDED by 2 working days ("Awaiting lab results"), stays silent, is
    CHASED (every step of the ladder falls due) and goes OVERDUE.
Package W (firearms) to GMP: GMP acknowledges it; the centre WITHDRAWS it ("Superseded.").

Worked by hand, for T (W is withdrawn and counts nothing):
  returns expected   ROCU-NW, MPS, WMP, LANCS (CHESHIRE's was withdrawn)       = 4
  final returns      ROCU-NW, MPS, LANCS                                       = 3  -> return rate 75%
  acknowledged       ROCU-NW (acked), MPS and LANCS (filing counts)            = 3  -> 75%
  final, actioned    ROCU-NW, LANCS                                            = 2  -> actioned 67%
  arrests            ROCU-NW 2 (direct), LANCS 4 (onward)                      = 6
  weapons            LANCS 1 (onward)                                          = 1
"""

from __future__ import annotations

from datetime import timedelta

from services.outcomes import chasing
from shared.db import utcnow
from tests.dissemination.helpers import issue_package
from tests.onward.chain import carry, disseminations, file, pass_on


def filed(outcomes_client, token, org, return_id, **changes) -> None:
    response = file(outcomes_client, token, org, return_id, **changes)
    assert response.status_code == 201, response.get_json()


def build(client, token, app, outcomes_app, outcomes_client, metrics_app, pump_events, run_jobs) -> dict:
    t = issue_package(
        client,
        token(),
        recipients=["ROCU-NW", "MPS", "WMP"],
        threat_area="drugs_supply",
        title="Cocaine line run from Toxteth",
        source_evaluation=2,
        intelligence_assessment="B",
    )
    w = issue_package(client, token(), recipients=["GMP"], threat_area="firearms", title="Handgun in Moss Side")
    run_jobs()
    carry(pump_events, app, outcomes_app)
    ids = {org: row["id"] for org, row in disseminations(client, token, t["id"]).items()}
    gmp = disseminations(client, token, w["id"])["GMP"]["id"]
    for org, dissemination in (("ROCU-NW", ids["ROCU-NW"]), ("GMP", gmp)):
        response = client.post(f"/api/v1/disseminations/{dissemination}/acknowledge", headers=token(org, "recipient"))
        assert response.status_code == 200, response.get_json()
    withdrawn = client.post(f"/api/v1/packages/{w['id']}/withdraw", json={"reason": "Superseded."}, headers=token())
    assert withdrawn.status_code == 200, withdrawn.get_json()

    passing = pass_on("LANCS", actions=["enforcement", "passed_on"], results={"arrests": 1}, attribution="direct")
    filed(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"], **passing)
    filed(outcomes_client, token, "MPS", ids["MPS"], **pass_on("CHESHIRE"))
    carry(pump_events, app, outcomes_app)
    run_jobs()
    carry(pump_events, app, outcomes_app)
    ids = {org: row["id"] for org, row in disseminations(client, token, t["id"]).items()}
    filed(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"],
          **pass_on("LANCS", status="final", actions=["enforcement", "passed_on"], results={"arrests": 2},
                    attribution="direct"))  # fmt: skip
    filed(outcomes_client, token, "LANCS", ids["LANCS"], status="final", actions=["enforcement"],
          results={"arrests": 3}, attribution="direct")  # fmt: skip
    filed(outcomes_client, token, "LANCS", ids["LANCS"], status="final", actions=["enforcement"],
          results={"arrests": 4, "weapons_seized": 1}, attribution="direct")  # fmt: skip
    filed(outcomes_client, token, "MPS", ids["MPS"], status="final", actions=["no_action"],
          no_action_reason="Already under investigation.", priority="not_prioritised", tasking_forum=None,
          results={}, attribution=None, strands=[])  # fmt: skip
    extended = outcomes_client.post(
        f"/api/v1/returns/{ids['WMP']}/extend",
        json={"working_days": 2, "reason": "Awaiting lab results"},
        headers=token(),
    )
    assert extended.status_code == 200, extended.get_json()
    carry(pump_events, app, outcomes_app)

    # WMP's ladder: the chase sweep as if 60 days had passed, and the chases sent.
    session = outcomes_app.extensions["database"].session()
    chasing.sweep(session, outcomes_app.extensions["settings"], now=utcnow() + timedelta(days=60))
    session.close()
    run_jobs("outcomes")
    carry(pump_events, app, outcomes_app)
    pump_events(source=app, target=metrics_app)
    pump_events(source=outcomes_app, target=metrics_app)
    return {"t": t, "w": w, "ids": ids, "gmp": gmp}
