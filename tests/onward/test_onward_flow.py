"""Intelligence passed on: centre -> ROCU-NW -> GMP, through the real APIs and events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from services.outcomes import chasing
from services.outcomes.models import ChaseEntry
from shared.notify import plain_text
from tests.onward.chain import (
    carry,
    deliver,
    deliver_batch,
    disseminations,
    file,
    outbox_messages,
    pass_on,
    returns_of,
    start,
)


def test_a_pass_on_creates_a_dissemination_delivered_acknowledged_and_chased_like_any_other(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs, mailbox
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]

    # The dissemination service: GMP holds it now, one pass-on deep, from ROCU-NW's dissemination.
    rows = disseminations(client, token, package["id"])
    assert set(rows) == {"ROCU-NW", "MPS", "GMP"}
    gmp = rows["GMP"]
    assert (gmp["onward_from"], gmp["onward_depth"], gmp["passed_on_by"]) == (ids["ROCU-NW"], 1, "ROCU-NW")
    assert (rows["ROCU-NW"]["onward_from"], rows["ROCU-NW"]["onward_depth"]) == (None, 0)
    assert gmp["status"] == "pending_delivery"

    # Its return is due ONWARD_OUTCOME_DAYS (28) after the pass-on, not with the package.
    filed = outcomes_client.get(f"/api/v1/returns/{ids['ROCU-NW']}/outcomes", headers=token()).get_json()[0]
    passed_at = datetime.fromisoformat(filed["filed_at"])
    assert datetime.fromisoformat(gmp["due_at"]) == passed_at + timedelta(days=28)

    # Delivered through the same path: GMP is e-mailed, told who passed it on.
    run_jobs()
    mails = [m for m in mailbox() if m["To"] == "outcomes.gmp@directory.invalid"]
    assert len(mails) == 1
    text = plain_text(mails[0])
    assert "has been passed on to" in text and "by ROCU-NW." in text and package["reference"] in text
    assert f"/disseminations/{gmp['id']}" in text
    gmp_token = token("GMP", "recipient")
    inbox = client.get("/api/v1/inbox", headers=gmp_token).get_json()
    assert [(item["id"], item["status"], item["passed_on_by"]) for item in inbox] == [
        (gmp["id"], "delivered", "ROCU-NW")
    ]
    # GMP may read the package now, and acknowledges it like any other.
    assert client.get(f"/api/v1/packages/{package['id']}", headers=gmp_token).status_code == 200
    response = client.post(f"/api/v1/disseminations/{gmp['id']}/acknowledge", headers=gmp_token)
    assert response.status_code == 200 and response.get_json()["status"] == "acknowledged"

    # The outcomes service expects a return from GMP, with the same onward_from.
    carry(pump_events, app, outcomes_app)
    returns = returns_of(outcomes_client, token, package["id"])
    assert set(returns) == {"ROCU-NW", "MPS", "GMP"}
    assert returns["GMP"]["id"] == gmp["id"]
    assert (returns["GMP"]["onward_from"], returns["GMP"]["onward_depth"]) == (ids["ROCU-NW"], 1)
    assert returns["GMP"]["status"] == "open" and returns["GMP"]["acknowledged_at"] is not None
    assert returns["GMP"]["issued_at"] == filed["filed_at"]
    assert returns["MPS"]["onward_from"] is None

    # Chased by the same ladder: 3 days overdue, GMP has had its reminder, due-day and overdue notices.
    session = outcomes_app.extensions["database"].session()
    try:
        chasing.sweep(session, outcomes_app.extensions["settings"], now=passed_at + timedelta(days=31))
    finally:
        session.close()
    run_jobs("outcomes")
    chases = outcomes_client.get(f"/api/v1/returns/{gmp['id']}/chases", headers=token()).get_json()
    assert {c["step"] for c in chases} >= {"overdue"}
    assert any(c["result"] == "sent" for c in chases)
    assert any(m["To"] == "outcomes.gmp@directory.invalid" and "Outcome return for" in m["Subject"] for m in mailbox())

    # The centre reads the chain: centre -> ROCU-NW -> GMP, each with its return.
    chain = client.get(f"/api/v1/packages/{package['id']}/chain", headers=token()).get_json()
    assert chain["reference"] == package["reference"]
    links = {link["organisation"]: link for link in chain["links"]}
    assert links["GMP"]["chain"] == "NCLCC -> ROCU-NW (interim return) -> GMP (no return yet)"
    assert links["GMP"]["passed_on_by"] == "ROCU-NW" and links["GMP"]["onward_depth"] == 1
    assert links["MPS"]["chain"] == "NCLCC -> MPS (no return yet)"
    # Reading the chain is audited against the package, as every read is.
    audit = client.get(
        "/api/v1/audit",
        query_string={"action": "GET /api/v1/packages/<uuid:package_id>/chain"},
        headers=token("NCLCC", "admin"),
    ).get_json()
    assert [(e["target_type"], e["target_id"], e["outcome"]) for e in audit] == [("package", package["id"], "allowed")]
    # Each link after the one it came from; the centre's recipients in the order they were sent (then by code).
    assert [link["organisation"] for link in chain["links"]] == ["MPS", "ROCU-NW", "GMP"]

    # GMP's final return reaches the centre along the chain.
    response = file(outcomes_client, token, "GMP", gmp["id"], status="final", results={"arrests": 4})
    assert response.status_code == 201, response.get_json()
    carry(pump_events, app, outcomes_app)
    chain = client.get(f"/api/v1/packages/{package['id']}/chain", headers=token()).get_json()
    links = {link["organisation"]: link for link in chain["links"]}
    assert links["GMP"]["chain"] == "NCLCC -> ROCU-NW (interim return) -> GMP (final return)"
    assert links["GMP"]["return_status"] == "final"


def test_an_amendment_that_drops_the_pass_on_withdraws_it_and_a_new_passed_to_gets_its_own(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs, mailbox
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    run_jobs()
    gmp_id = ids["GMP"]

    # ROCU-NW corrects itself: it passed it to Lancashire, not GMP.
    response = file(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"], **pass_on("LANCS"))
    assert response.status_code == 201, response.get_json()
    carry(pump_events, app, outcomes_app)
    run_jobs()
    rows = disseminations(client, token, package["id"])
    assert set(rows) == {"ROCU-NW", "MPS", "GMP", "LANCS"}
    assert rows["GMP"]["status"] == "withdrawn" and rows["GMP"]["withdrawn_at"] is not None
    assert "no longer passed on to GMP" in rows["GMP"]["withdrawal_reason"]
    assert (rows["LANCS"]["onward_from"], rows["LANCS"]["onward_depth"]) == (ids["ROCU-NW"], 1)
    assert rows["LANCS"]["id"] != gmp_id

    # GMP is told, as when a package is withdrawn; Lancashire gets the package.
    gmp_mails = [m for m in mailbox() if m["To"] == "outcomes.gmp@directory.invalid"]
    assert [("WITHDRAWN" in m["Subject"]) for m in gmp_mails] == [False, True]
    assert "no longer passed on to GMP" in plain_text(gmp_mails[1])
    assert any(m["To"] == "outcomes.lancs@directory.invalid" for m in mailbox())
    gmp_token = token("GMP", "recipient")
    assert [i["status"] for i in client.get("/api/v1/inbox?status=withdrawn", headers=gmp_token).get_json()] == [
        "withdrawn"
    ]
    assert client.get("/api/v1/inbox?status=delivered", headers=gmp_token).get_json() == []
    assert client.post(f"/api/v1/disseminations/{gmp_id}/acknowledge", headers=gmp_token).status_code == 409

    # GMP's expected return is closed: nothing to file, nothing chased.
    returns = returns_of(outcomes_client, token, package["id"])
    assert returns["GMP"]["status"] == "withdrawn" and returns["LANCS"]["status"] == "open"
    assert file(outcomes_client, token, "GMP", gmp_id, status="final").status_code == 409
    session = outcomes_app.extensions["database"].session()
    try:
        due = datetime.fromisoformat(returns["LANCS"]["due_at"])
        chasing.sweep(session, outcomes_app.extensions["settings"], now=due + timedelta(days=30))
        chased = set(session.scalars(select(ChaseEntry.return_id).distinct()))
    finally:
        session.close()
    assert {str(i) for i in chased} == {ids["MPS"], ids["ROCU-NW"], rows["LANCS"]["id"]}

    # Dropping the pass-on altogether withdraws Lancashire's too.
    response = file(
        outcomes_client,
        token,
        "ROCU-NW",
        ids["ROCU-NW"],
        status="final",
        actions=["enforcement"],
        results={"arrests": 1},
        attribution="direct",
    )
    assert response.status_code == 201
    carry(pump_events, app, outcomes_app)
    rows = disseminations(client, token, package["id"])
    assert {org: row["status"] for org, row in rows.items() if row["onward_depth"]} == {
        "GMP": "withdrawn",
        "LANCS": "withdrawn",
    }
    assert returns_of(outcomes_client, token, package["id"])["LANCS"]["status"] == "withdrawn"


def test_withdrawing_the_package_withdraws_what_was_passed_on(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs, mailbox
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package = world["package"]
    run_jobs()
    response = client.post(
        f"/api/v1/packages/{package['id']}/withdraw", json={"reason": "Superseded."}, headers=token()
    )
    assert response.status_code == 200
    run_jobs()
    carry(pump_events, app, outcomes_app)
    assert {row["status"] for row in disseminations(client, token, package["id"]).values()} == {"withdrawn"}
    assert {row["status"] for row in returns_of(outcomes_client, token, package["id"]).values()} == {"withdrawn"}
    withdrawn_to = {m["To"] for m in mailbox() if "WITHDRAWN" in m["Subject"]}
    assert "outcomes.gmp@directory.invalid" in withdrawn_to and len(withdrawn_to) == 3


def test_a_chain_three_deep_and_what_it_cannot_do(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    """ROCU-NW (0) -> GMP (1) -> LANCS (2) -> CHESHIRE (3): CHESHIRE may pass it on no further
    (ONWARD_MAX_DEPTH 3), and nobody may pass it to an organisation that holds it."""
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    assert file(outcomes_client, token, "GMP", ids["GMP"], **pass_on("LANCS")).status_code == 201
    carry(pump_events, app, outcomes_app)
    lancs = disseminations(client, token, package["id"])["LANCS"]
    assert file(outcomes_client, token, "LANCS", lancs["id"], **pass_on("CHESHIRE")).status_code == 201
    carry(pump_events, app, outcomes_app)
    rows = disseminations(client, token, package["id"])
    assert {org: row["onward_depth"] for org, row in rows.items()} == {
        "ROCU-NW": 0,
        "MPS": 0,
        "GMP": 1,
        "LANCS": 2,
        "CHESHIRE": 3,
    }
    chain = client.get(f"/api/v1/packages/{package['id']}/chain", headers=token()).get_json()
    assert {link["organisation"]: link["chain"] for link in chain["links"]}["CHESHIRE"] == (
        "NCLCC -> ROCU-NW (interim return) -> GMP (interim return) -> LANCS (interim return) "
        "-> CHESHIRE (no return yet)"
    )

    events_before = _outbox_count(outcomes_app)
    refused = [
        ("CHESHIRE", rows["CHESHIRE"]["id"], "MERSEY", "passed on 3 times"),  # too deep
        ("LANCS", lancs["id"], "ROCU-NW", "already holds"),  # back up the chain: a loop
        ("ROCU-NW", ids["ROCU-NW"], "MPS", "already holds"),  # another of the centre's recipients
        ("ROCU-NW", ids["ROCU-NW"], "NCLCC", "issued this package"),  # the centre
        ("GMP", ids["GMP"], "CHESHIRE", "already holds"),
    ]
    for org, return_id, to, words in refused:
        response = file(outcomes_client, token, org, return_id, **pass_on(to))
        assert response.status_code == 422, (org, to, response.get_json())
        errors = response.get_json()["errors"]["json"]
        assert list(errors) == ["passed_to"] and words in errors["passed_to"][0], (org, to, errors)
    # Each refusal is audited against its return.
    audit = outcomes_client.get(
        "/api/v1/audit",
        query_string={"action": "POST /api/v1/returns/<uuid:return_id>/outcomes", "outcome": "invalid"},
        headers=token("NCLCC", "admin"),
    ).get_json()
    assert sorted(e["target_id"] for e in audit) == sorted(return_id for _org, return_id, _to, _words in refused)
    # The refusals changed nothing: no filing, no event.
    assert _outbox_count(outcomes_app) == events_before
    assert (
        len(outcomes_client.get(f"/api/v1/returns/{rows['CHESHIRE']['id']}/outcomes", headers=token()).get_json()) == 0
    )
    # Keeping the pass-on a return already made is allowed (an amendment saying it again).
    assert file(outcomes_client, token, "LANCS", lancs["id"], **pass_on("CHESHIRE", status="final")).status_code == 201
    carry(pump_events, app, outcomes_app)
    assert len(disseminations(client, token, package["id"])) == 5


def test_redelivered_events_create_nothing_twice(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    file(outcomes_client, token, "ROCU-NW", ids["ROCU-NW"], **pass_on("LANCS"))
    carry(pump_events, app, outcomes_app)
    before = (disseminations(client, token, package["id"]), returns_of(outcomes_client, token, package["id"]))
    events_before = (_outbox_count(app), _outbox_count(outcomes_app))
    # Every event, both ways, again (as a relay retried after a lost answer does).
    results = _redeliver(app, outcomes_app) + _redeliver(outcomes_app, app)
    assert set(results) == {"duplicate"}
    after = (disseminations(client, token, package["id"]), returns_of(outcomes_client, token, package["id"]))
    assert after == before
    assert (_outbox_count(app), _outbox_count(outcomes_app)) == events_before


def _outbox_count(service_app) -> int:
    return len(outbox_messages(service_app))


def _redeliver(source, target) -> list[str]:
    return [deliver(target, message) for message in outbox_messages(source)]


def test_a_lost_redis_delays_the_onward_notices_and_loses_none(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs, mailbox, redis_conn
):
    from services.dissemination import jobs

    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    redis_conn.flushdb()  # GMP's delivery job is lost
    run_jobs()
    assert not [m for m in mailbox() if m["To"] == "outcomes.gmp@directory.invalid"]
    assert jobs.sweep_notifications(settle_seconds=0) == 1
    run_jobs()
    assert len([m for m in mailbox() if m["To"] == "outcomes.gmp@directory.invalid"]) == 1

    # The amendment's withdrawal notice is lost too, and found by the same sweep.
    assert file(outcomes_client, token, "ROCU-NW", world["ids"]["ROCU-NW"], **pass_on("LANCS")).status_code == 201
    carry(pump_events, app, outcomes_app)
    redis_conn.flushdb()
    assert jobs.sweep_notifications(settle_seconds=0) == 2  # GMP's withdrawal, LANCS's delivery
    run_jobs()
    gmp_subjects = [m["Subject"] for m in mailbox() if m["To"] == "outcomes.gmp@directory.invalid"]
    assert len(gmp_subjects) == 2 and "WITHDRAWN" in gmp_subjects[1]
    assert any(m["To"] == "outcomes.lancs@directory.invalid" for m in mailbox())
    assert jobs.sweep_notifications(settle_seconds=0) == 0


def test_pass_ons_and_their_amendments_in_one_batch_are_followed_in_order(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    """The relay sends a subscriber's waiting events in one batch. A batch knows which of its
    returns were passed on when it began (``onward.BatchKnowledge``), and what its own events
    pass on: MPS passes the package to KENT, then amends to ESSEX, and ROCU-NW (which passed it
    to GMP before) amends to LANCS, all four filings in one batch."""
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    filings = [("MPS", "KENT"), ("MPS", "ESSEX"), ("ROCU-NW", "LANCS")]
    for org, to in filings:
        response = file(outcomes_client, token, org, ids[org], **pass_on(to))
        assert response.status_code == 201, response.get_json()
    waiting = [
        message
        for message in outbox_messages(outcomes_app)
        if (("outcomes", "dissemination"), uuid.UUID(message["id"])) not in pump_events.delivered
    ]
    assert [message["type"] for message in waiting] == ["outcome.filed"] * 3
    answer = deliver_batch(app, waiting)
    assert answer == ["applied"] * 3
    pump_events.delivered.update((("outcomes", "dissemination"), uuid.UUID(m["id"])) for m in waiting)
    carry(pump_events, app, outcomes_app)

    rows = disseminations(client, token, package["id"])
    onward = {
        org: (row["status"], rows_by_id(rows)[row["onward_from"]]) for org, row in rows.items() if row["onward_depth"]
    }
    assert onward == {
        "GMP": ("withdrawn", "ROCU-NW"),
        "KENT": ("withdrawn", "MPS"),
        "ESSEX": ("pending_delivery", "MPS"),
        "LANCS": ("pending_delivery", "ROCU-NW"),
    }
    assert "no longer passed on to KENT" in rows["KENT"]["withdrawal_reason"]
    returns = returns_of(outcomes_client, token, package["id"])
    assert {org: returns[org]["status"] for org in onward} == {
        "GMP": "withdrawn",
        "KENT": "withdrawn",
        "ESSEX": "open",
        "LANCS": "open",
    }


def rows_by_id(rows: dict[str, dict]) -> dict[str, str]:
    return {row["id"]: org for org, row in rows.items()}


def test_two_returns_passing_to_one_organisation_in_one_batch_make_one_pass_on_and_lose_neither(
    client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs
):
    """Two recipients pass the package to the same organisation before either pass-on exists
    (the outcomes service cannot see the race): the first pass-on stands, the second is not
    followed, and the second filing still counts (its return status and acknowledgement), even
    when both come in one batch."""
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    package, ids = world["package"], world["ids"]
    for org in ("MPS", "ROCU-NW"):
        response = file(outcomes_client, token, org, ids[org], **pass_on("KENT", status="final"))
        assert response.status_code == 201, response.get_json()
    waiting = [
        message
        for message in outbox_messages(outcomes_app)
        if (("outcomes", "dissemination"), uuid.UUID(message["id"])) not in pump_events.delivered
    ]
    assert deliver_batch(app, waiting) == ["applied", "applied"]
    pump_events.delivered.update((("outcomes", "dissemination"), uuid.UUID(m["id"])) for m in waiting)
    carry(pump_events, app, outcomes_app)

    rows = disseminations(client, token, package["id"])
    assert rows["KENT"]["passed_on_by"] == "MPS"
    assert rows["GMP"]["status"] == "withdrawn"  # ROCU-NW's amendment no longer passes it to GMP
    assert rows["MPS"]["status"] == rows["ROCU-NW"]["status"] == "returned"
