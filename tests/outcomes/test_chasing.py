"""The chaser, step by step with a controlled clock: each step once, in order, to the right
people, stopped by a final return or a withdrawal, re-planned by an extension, safe with two
sweeps at once and after a Redis flush."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from services.outcomes import chasing
from shared.notify import html_part, plain_text
from tests.outcomes import chase_helpers
from tests.outcomes.chase_helpers import FAST_LADDER, issue_return, put_policy, seed_organisation, send_event
from tests.outcomes.helpers import outcome_body


@pytest.fixture
def chase(outcomes_app, outcomes_client, token, redis_conn, run_jobs, monkeypatch):
    """A fast ladder, GMP in the directory, and a sweep at any moment after the start, which is
    also the 'now' returns are issued at."""
    put_policy(outcomes_client, token, FAST_LADDER)
    seed_organisation(outcomes_app)
    database = outcomes_app.extensions["database"]
    settings = outcomes_app.extensions["settings"]
    start = datetime.now(UTC)
    monkeypatch.setattr(chase_helpers, "clock_start", lambda: start)

    def sweep_at(seconds: float) -> dict:
        session = database.session()
        try:
            return chasing.sweep(session, settings, now=start + timedelta(seconds=seconds))
        finally:
            session.close()

    def sweep_and_send(seconds: float) -> dict:
        counts = sweep_at(seconds)
        run_jobs("outcomes")
        return counts

    return sweep_at, sweep_and_send


def chases(outcomes_client, token, return_id) -> list[dict]:
    return outcomes_client.get(f"/api/v1/returns/{return_id}/chases", headers=token()).get_json()


def test_the_policy_is_admin_editable_and_validated(outcomes_client, token):
    policy = outcomes_client.get("/api/v1/chase-policy", headers=token()).get_json()
    assert [s["name"] for s in policy["steps"]] == [
        "reminder",
        "due_today",
        "overdue",
        "escalation",
        "centre_escalation",
    ]
    assert policy["steps"][0]["offset_seconds"] == -3 * 86400
    bad = {"steps": [{"name": "x1", "offset_seconds": 1.5, "notify": "press"}]}
    response = outcomes_client.put("/api/v1/chase-policy", json=bad, headers=token(roles="admin"))
    errors = response.get_json()["errors"]["json"]["steps"]["0"]
    assert response.status_code == 422 and set(errors) == {"offset_seconds", "notify"}
    twice = {"steps": [FAST_LADDER[0], FAST_LADDER[0]]}
    assert outcomes_client.put("/api/v1/chase-policy", json=twice, headers=token(roles="admin")).status_code == 422
    assert outcomes_client.put("/api/v1/chase-policy", json={"steps": FAST_LADDER}, headers=token()).status_code == 403


def test_each_step_is_sent_once_in_order_to_its_audience(chase, outcomes_app, outcomes_client, token, mailbox):
    sweep_at, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    for moment in (0, 8.5, 8.6, 10.5, 12.5, 14.5, 16.5, 30, 60):
        sweep_and_send(moment)
    log = chases(outcomes_client, token, rid)
    assert [(c["step"], c["notify"], c["result"]) for c in log] == [
        ("reminder", "recipient", "sent"),
        ("due_today", "recipient", "sent"),
        ("overdue", "recipient", "sent"),
        ("escalation", "escalation", "sent"),
        ("centre_escalation", "centre", "sent"),
    ]
    to = [m["To"] for m in mailbox()]
    assert to == ["outcomes.gmp@directory.invalid"] * 3 + ["escalation.gmp@directory.invalid", "returns@nclcc.invalid"]
    body = plain_text(mailbox()[0])
    assert "/form/" in body  # the form link is in every chase
    assert all(c["sent_at"] and c["channel"] == "email" for c in log)


def test_the_return_is_listed_overdue_and_an_event_is_emitted_once(
    chase, outcomes_app, outcomes_client, token, consumer, run_jobs, monkeypatch
):
    sweep_at, _ = chase
    rid = issue_return(outcomes_app, due_in_seconds=5)
    sweep_at(1)
    assert outcomes_client.get("/api/v1/returns?status=overdue", headers=token()).get_json() == []
    assert sweep_at(6)["overdue"] == 1
    assert sweep_at(7)["overdue"] == 0
    due = datetime.fromisoformat(outcomes_client.get(f"/api/v1/returns/{rid}", headers=token()).get_json()["due_at"])
    monkeypatch.setitem(outcomes_app.extensions, "clock", lambda: due + timedelta(seconds=0.1))  # the API's clock
    overdue = outcomes_client.get("/api/v1/returns?status=overdue", headers=token()).get_json()
    assert [r["id"] for r in overdue] == [rid] and overdue[0]["status"] == "overdue"
    run_jobs("outcomes")
    assert [e["payload"]["return_id"] for e in consumer.of_type("return.overdue")] == [rid]


def test_returns_overdue_in_one_sweep_each_get_one_event_in_order(chase, outcomes_app, consumer, run_jobs):
    """A sweep that finds many returns late emits their events together (one insert): each
    return's own event, once, delivered, and nothing again from the next sweep."""
    sweep_at, _ = chase
    ids = [issue_return(outcomes_app, due_in_seconds=5 + n / 10) for n in range(3)]
    assert sweep_at(6)["overdue"] == 3
    assert sweep_at(7)["overdue"] == 0
    run_jobs("outcomes")
    events = consumer.of_type("return.overdue")
    assert sorted(e["payload"]["return_id"] for e in events) == sorted(ids)
    assert len({e["id"] for e in events}) == 3
    assert all(e["payload"]["organisation"] == "GMP" and e["payload"]["overdue_at"] for e in events)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)


def test_a_final_return_stops_the_ladder(chase, outcomes_app, outcomes_client, token):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    response = outcomes_client.post(
        f"/api/v1/returns/{rid}/outcomes", json=outcome_body(status="final"), headers=token("GMP", "recipient")
    )
    assert response.status_code == 201
    for moment in (10.5, 12.5, 20, 60):
        sweep_and_send(moment)
    assert [c["step"] for c in chases(outcomes_client, token, rid)] == ["reminder"]


def test_an_interim_return_does_not_stop_the_ladder(chase, outcomes_app, outcomes_client, token):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    outcomes_client.post(
        f"/api/v1/returns/{rid}/outcomes", json=outcome_body(status="interim"), headers=token("GMP", "recipient")
    )
    sweep_and_send(12.5)
    assert "overdue" in [c["step"] for c in chases(outcomes_client, token, rid)]


def test_a_step_claimed_but_not_yet_sent_is_cancelled_by_a_final_return(
    chase, outcomes_app, outcomes_client, token, run_jobs, mailbox
):
    sweep_at, _ = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_at(8.5)  # claimed; the send job has not run yet
    outcomes_client.post(
        f"/api/v1/returns/{rid}/outcomes", json=outcome_body(status="final"), headers=token("GMP", "recipient")
    )
    run_jobs("outcomes")
    assert [c["result"] for c in chases(outcomes_client, token, rid)] == ["cancelled"]
    assert mailbox() == []


def test_withdrawal_stops_the_ladder(chase, outcomes_app, outcomes_client, token):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    send_event(outcomes_app, "package.withdrawn", {"dissemination_ids": [rid], "reason": "Superseded."}, rid)
    sweep_and_send(30)
    assert [c["step"] for c in chases(outcomes_client, token, rid)] == ["reminder"]


def test_an_extension_replans_the_steps_not_yet_sent(chase, outcomes_app, outcomes_client, token):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    due = datetime.fromisoformat(outcomes_client.get(f"/api/v1/returns/{rid}", headers=token()).get_json()["due_at"])
    new_due = due + timedelta(days=2)
    response = outcomes_client.post(
        f"/api/v1/returns/{rid}/extend",
        json={"due_at": new_due.isoformat(), "reason": "Operation still live."},
        headers=token(),
    )
    assert response.status_code == 200 and response.get_json()["extensions"][0]["reason"] == "Operation still live."
    sweep_and_send(30)  # would have sent every step under the old due date
    assert [c["step"] for c in chases(outcomes_client, token, rid)] == ["reminder"]


def test_extensions_in_working_days_skip_weekends_and_bank_holidays(chase, outcomes_app, outcomes_client, token):
    rid = issue_return(outcomes_app, due_in_seconds=10)
    response = outcomes_client.post(
        f"/api/v1/returns/{rid}/extend", json={"working_days": 3, "reason": "More time"}, headers=token()
    )
    from shared.calendar import add_working_days

    old_due = datetime.fromisoformat(response.get_json()["extensions"][0]["from"])
    assert datetime.fromisoformat(response.get_json()["due_at"]) == add_working_days(old_due, 3, "North West")
    bad = outcomes_client.post(f"/api/v1/returns/{rid}/extend", json={"reason": "More time"}, headers=token())
    assert bad.status_code == 422 and "due_at" in bad.get_json()["errors"]["json"]
    earlier = outcomes_client.post(
        f"/api/v1/returns/{rid}/extend", json={"due_at": old_due.isoformat(), "reason": "Oops"}, headers=token()
    )
    assert earlier.status_code == 422
    assert (
        outcomes_client.post(
            f"/api/v1/returns/{rid}/extend",
            json={"working_days": 1, "reason": "x y"},
            headers=token("GMP", "recipient"),
        ).status_code
        == 403
    )


def test_the_working_day_calendar():
    from shared.calendar import add_working_days

    friday = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)  # Christmas Eve, a Thursday in 2026
    # Christmas Day (Fri), weekend, Boxing Day observed (Mon 28th): the next working day is Tue 29th.
    assert add_working_days(friday, 1).date().isoformat() == "2026-12-29"
    # St Andrew's Day (30 Nov 2026, a Monday) is a bank holiday in Scotland only.
    friday_27 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert add_working_days(friday_27, 1, "Scotland").date().isoformat() == "2026-12-01"
    assert add_working_days(friday_27, 1, "North West").date().isoformat() == "2026-11-30"


def test_steps_that_fall_due_together_send_only_the_latest(chase, outcomes_app, outcomes_client, token, mailbox):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(30)  # the sweep was down: every step is due at once
    log = {c["step"]: c for c in chases(outcomes_client, token, rid)}
    assert [s for s, c in log.items() if c["result"] == "sent"] == ["overdue", "escalation", "centre_escalation"]
    assert log["reminder"]["result"] == "skipped" and "superseded" in log["reminder"]["error"]
    assert len(mailbox()) == 3


def test_steps_planned_before_the_issue_are_skipped(chase, outcomes_app, outcomes_client, token):
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10, issued_seconds_ago=0)
    sweep_and_send(9)  # the reminder at -2 s was planned for after the issue: sent
    assert [c["result"] for c in chases(outcomes_client, token, rid)] == ["sent"]
    late = issue_return(outcomes_app, due_in_seconds=1, issued_seconds_ago=0)  # the reminder would be at -2 s
    sweep_and_send(60)
    reminder = chases(outcomes_client, token, late)[0]
    assert (reminder["step"], reminder["result"]) == ("reminder", "skipped")
    assert reminder["error"] == "planned before the package was issued"


def test_two_sweeps_at_once_claim_each_step_once(chase, outcomes_app, outcomes_client, token, run_jobs, mailbox):
    sweep_at, _ = chase
    ids = [issue_return(outcomes_app, due_in_seconds=10) for _ in range(5)]
    barrier = threading.Barrier(2)
    results, failures = [], []

    def sweeper():
        barrier.wait()
        try:
            results.append(sweep_at(8.5))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sum(r["claimed"] for r in results) == 5
    run_jobs("outcomes")
    assert all(len(chases(outcomes_client, token, rid)) == 1 for rid in ids)
    assert len(mailbox()) == 5


def test_a_redis_flush_between_claim_and_send_loses_no_step(
    chase, outcomes_app, outcomes_client, token, run_jobs, redis_conn, mailbox
):
    sweep_at, _ = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_at(8.5)
    redis_conn.flushdb()  # the send job is gone; the claimed step is still in the database
    run_jobs("outcomes")
    assert mailbox() == []
    session = outcomes_app.extensions["database"].session()
    assert chasing.requeue_lost_sends(session, outcomes_app.extensions["settings"], older_than_seconds=0) == 1
    session.close()
    run_jobs("outcomes")
    assert [c["result"] for c in chases(outcomes_client, token, rid)] == ["sent"]
    assert len(mailbox()) == 1
    sweep_at(8.6)
    run_jobs("outcomes")
    assert len(mailbox()) == 1  # and never twice


def test_a_send_whose_step_row_is_busy_waits_for_it_instead_of_skipping(chase, outcomes_app, mailbox):
    """A transaction holding the step's row (here one that then gives up) once made send_chase
    skip it (``SKIP LOCKED``) and answer "nothing to do": the step waited minutes for
    ``requeue_lost_sends``. It now waits for the row, and whoever comes second sends nothing."""
    import uuid

    from sqlalchemy import select

    from services.outcomes import jobs
    from services.outcomes.models import ChaseEntry

    if not outcomes_app.extensions["settings"].on_postgres:
        pytest.skip("row locks need PostgreSQL (SQLite locks the whole file)")
    sweep_at, _ = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_at(8.5)  # the reminder is claimed; its send job has not run
    holder = outcomes_app.extensions["database"].session()
    entry = holder.scalars(select(ChaseEntry).where(ChaseEntry.return_id == uuid.UUID(rid)).with_for_update()).one()
    entry_id = entry.id
    result = {}
    send = threading.Thread(target=lambda: result.update(answer=jobs.send_chase(entry_id)))
    send.start()
    send.join(timeout=1.0)
    assert send.is_alive(), "the send waits while another transaction holds the step"
    holder.rollback()
    holder.close()
    send.join(timeout=30)
    assert result["answer"] == "sent"
    assert len(mailbox()) == 1
    assert jobs.send_chase(entry_id) == "nothing to do"
    assert len(mailbox()) == 1


@responses.activate
def test_a_failed_send_is_retried_and_recorded(chase, outcomes_app, outcomes_client, token):
    responses.add_passthru("http://127.0.0.1")
    hook = "https://hooks.gmp.example/chase"
    seed_organisation(outcomes_app, webhook_url=hook)
    responses.add(responses.POST, hook, status=502)
    responses.add(responses.POST, hook, status=200)
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    entry = chases(outcomes_client, token, rid)[0]
    assert entry["result"] == "sent" and entry["channel"] == "webhook" and entry["attempts"] == 2
    assert len(responses.calls) == 2


@responses.activate
def test_a_permanent_failure_falls_back_to_the_other_contact(chase, outcomes_app, outcomes_client, token, mailbox):
    responses.add_passthru("http://127.0.0.1")
    hook = "https://hooks.gmp.example/chase"
    seed_organisation(outcomes_app, webhook_url=hook)
    responses.add(responses.POST, hook, status=404)
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    before = counters()
    sweep_and_send(8.5)
    entry = chases(outcomes_client, token, rid)[0]
    assert entry["result"] == "sent_fallback" and entry["channel"] == "email"
    assert "HTTP 404" in entry["error"]
    assert [m["To"] for m in mailbox()] == ["outcomes.gmp@directory.invalid"]
    # What an operator sees in /metrics: one step sent by the fallback, one webhook failure.
    assert changes(before) == {"sent_fallback": 1, "webhook failures": 1}


@responses.activate
def test_when_every_contact_fails_the_step_is_recorded_failed(chase, outcomes_app, outcomes_client, token):
    responses.add_passthru("http://127.0.0.1")
    hook = "https://hooks.gmp.example/chase"
    seed_organisation(outcomes_app, webhook_url=hook, email=None)
    responses.add(responses.POST, hook, body=requests.ConnectionError("down"))
    _, sweep_and_send = chase
    rid = issue_return(outcomes_app, due_in_seconds=10)
    before = counters()
    sweep_and_send(8.5)
    entry = chases(outcomes_client, token, rid)[0]
    assert entry["result"] == "failed" and entry["attempts"] == 3 and "unreachable" in entry["error"]
    assert changes(before) == {"retrying": 2, "failed": 1, "webhook failures": 3}


def counters() -> dict[str, float]:
    """The chase and notification counters /metrics reports (this process's registry)."""
    from prometheus_client import REGISTRY

    values = {
        result: REGISTRY.get_sample_value("ofs_chase_steps_total", {"result": result}) or 0
        for result in ("sent", "sent_fallback", "failed", "retrying")
    }
    for channel in ("webhook", "email"):
        labels = {"service": "outcomes", "channel": channel}
        values[f"{channel} failures"] = REGISTRY.get_sample_value("ofs_notification_failures_total", labels) or 0
    return values


def changes(before: dict[str, float]) -> dict[str, float]:
    return {name: number - before[name] for name, number in counters().items() if number != before[name]}


def test_each_message_is_written_for_its_reader_with_names_and_uk_time(chase, outcomes_app, mailbox):
    """The recipient is sent the form; its escalation contact is told about the force by name and
    sent to its pages; the centre is sent to its own view of the return, never to the form. Every
    e-mail has a plain-text and an HTML part with the same links, and times in UK local time."""
    _, sweep_and_send = chase
    seed_organisation(outcomes_app, "GMP", name="Greater Manchester Police")
    seed_organisation(outcomes_app, "NCLCC", name="National County Lines Coordination Centre")
    rid = issue_return(outcomes_app, due_in_seconds=10)
    for moment in (8.5, 10.5, 12.5, 14.5, 16.5):
        sweep_and_send(moment)
    mails = mailbox()
    assert len(mails) == 5
    reminder, _, overdue, escalation, centre = mails
    for mail in mails:
        text, html = plain_text(mail), html_part(mail)
        assert "GMP Police" not in text and "(GMP)" not in text and "Greater Manchester Police" in text
        assert " UTC" not in text and (" GMT" in text or " BST" in text)
        assert html.startswith("<!DOCTYPE html>") and "Greater Manchester Police" in html
        for link in (word for word in text.split() if word.startswith("http")):
            assert f'href="{link}"' in html
    assert "Greater Manchester Police: your outcome return" in plain_text(reminder)
    assert "/form/" in plain_text(reminder) and f"/disseminations/{rid}" in plain_text(reminder)
    assert "is overdue" in plain_text(overdue) and plain_text(overdue).count("/form/") == 1
    text = plain_text(escalation)
    assert escalation["To"] == "escalation.gmp@directory.invalid"
    assert text.startswith("Greater Manchester Police has an outcome return for intelligence package")
    assert "escalation contact" in text and "/form/" not in text and f"/disseminations/{rid}" in text
    text = plain_text(centre)
    assert centre["To"] == "returns@nclcc.invalid" and "/form/" not in text
    assert "/packages/" in text and f"#return-{rid}" in text
    assert "Greater Manchester Police's outcome return" in text


def test_times_are_written_in_uk_local_time_summer_and_winter():
    from shared.local_time import date_time_words, date_words

    assert date_time_words(datetime(2026, 7, 1, 13, 30, tzinfo=UTC), zone=True) == "1 July 2026 at 2:30pm BST"
    assert date_time_words(datetime(2026, 12, 1, 0, 5, tzinfo=UTC), zone=True) == "1 December 2026 at 12:05am GMT"
    assert date_time_words(datetime(2026, 12, 1, 0, 5)) == "1 December 2026 at 12:05am"  # naive: UTC
    assert date_words(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == "1 July 2026"  # already the 1st in London


def test_a_sweep_costs_the_same_few_statements_however_many_returns_fall_due(chase, outcomes_app):
    """The batch's chase log is read at once and its steps inserted at once (each unless another
    sweep has it): the statements a sweep runs do not grow with the returns it claims for."""
    from sqlalchemy import event

    sweep_at, _ = chase
    engine = outcomes_app.extensions["database"].engine
    statements: list[str] = []

    def counted(_conn, _cursor, statement, *_args):
        statements.append(statement)

    def swept(seconds: float) -> tuple[dict, int]:
        statements.clear()
        event.listen(engine, "before_cursor_execute", counted)
        try:
            counts = sweep_at(seconds)
        finally:
            event.remove(engine, "before_cursor_execute", counted)
        return counts, len(statements)

    for _ in range(2):
        issue_return(outcomes_app, due_in_seconds=10)
    few, few_statements = swept(8.5)  # the reminders of 2 returns
    for _ in range(12):
        issue_return(outcomes_app, due_in_seconds=10)
    many, many_statements = swept(8.6)  # the reminders of 12 more (the first 2 have theirs)
    assert (few["claimed"], many["claimed"]) == (2, 12)
    assert many_statements == few_statements, (few_statements, many_statements)
