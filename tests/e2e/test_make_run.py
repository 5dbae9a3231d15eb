"""`make run`'s processes for real: gunicorn, the RQ worker with its scheduler and the cron
process, started by tools.run as a user would, driven over HTTP with tokens from tools.token.

The recipient's webhook is a server on a loopback port that fails twice before accepting, so
the retries with backoff go through RQ's scheduler, not the in-process test worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks import Webhook

from shared.devredis import free_port
from shared.settings import ROOT

pytestmark = pytest.mark.e2e


class FlakyWebhook:
    """A recipient force's system: answers 503 to the first two calls, then 200."""

    def __init__(self):
        self.calls: list[dict] = []
        self.signed: list[tuple[dict, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.calls.append(json.loads(body))
                owner.signed.append((dict(self.headers), body))
                self.send_response(503 if len(owner.calls) <= 2 else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/nclcc"


def make_token(env, org, role) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tools.token", "--org", org, "--role", role],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token  # a token and nothing else
    return token


def wait_for(predicate, timeout=30.0, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


@pytest.fixture
def running(clean_db, redis_conn, consumer, tmp_path):
    port, outcomes_port, metrics_port = free_port(), free_port(), free_port()
    env = os.environ.copy()
    # The three real services, each receiving the others' events as in production.
    env.update(
        DISSEMINATION_PORT=str(port),
        DISSEMINATION_URL=f"http://127.0.0.1:{port}",
        OUTCOMES_PORT=str(outcomes_port),
        OUTCOMES_URL=f"http://127.0.0.1:{outcomes_port}",
        METRICS_PORT=str(metrics_port),
        METRICS_URL=f"http://127.0.0.1:{metrics_port}",
        DISSEMINATION_SUBSCRIBERS="outcomes,metrics",
        OUTCOMES_SUBSCRIBERS="dissemination,metrics",
        CHASE_SWEEP_SECONDS="1",
        OUTBOX_SWEEP_SECONDS="2",
        MIN_DUE_SECONDS="5",
        NOTIFY_RETRY_INTERVALS="1,2",
        RELAY_RETRY_INTERVALS="1,2",
        PYTHONUNBUFFERED="1",
        # supervisord's configuration and socket, this run's own.
        RUN_DIR=str(tmp_path / "run"),
    )
    log = open(tmp_path / "run.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready():
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError("make run exited:\n" + log.read()[-3000:])
        try:
            return all(
                requests.get(f"{url}/readyz", timeout=1).status_code == 200
                for url in (base, env["OUTCOMES_URL"], env["METRICS_URL"])
            )
        except requests.RequestException:
            return False

    try:
        wait_for(ready, timeout=120)  # a loaded two-core machine takes a minute to start them all
        yield base, env, process, log
    finally:
        # Also when they never became ready: left running, they would work the next test's jobs.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_make_run_serves_the_whole_dissemination_loop(running):
    base, env, process, log = running
    issuer = {"Authorization": "Bearer " + make_token(env, "NCLCC", "issuer,admin")}
    gmp = {"Authorization": "Bearer " + make_token(env, "GMP", "recipient")}
    mps = {"Authorization": "Bearer " + make_token(env, "MPS", "recipient")}
    wmp = {"Authorization": "Bearer " + make_token(env, "WMP", "recipient")}

    organisations = requests.get(f"{base}/api/v1/organisations", headers=gmp, timeout=5)
    assert json.loads(organisations.headers["X-Pagination"])["total"] >= 57  # the directory is seeded

    webhook = FlakyWebhook()
    patched = requests.patch(
        f"{base}/api/v1/organisations/GMP", json={"webhook_url": webhook.url}, headers=issuer, timeout=5
    )
    assert patched.status_code == 200
    body = {
        "title": "Line 'Dex' into Wigan",
        "summary": "Runners aged 14-16 travel from Liverpool.",
        "threat_area": "county_lines",
        "classification": "OFFICIAL-SENSITIVE",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "recipients": ["GMP", "MPS"],
    }
    package = requests.post(f"{base}/api/v1/packages", json=body, headers=issuer, timeout=5).json()
    issued = requests.post(f"{base}/api/v1/packages/{package['id']}/issue", headers=issuer, timeout=5)
    assert issued.status_code == 200

    gmp_inbox = requests.get(f"{base}/api/v1/inbox", headers=gmp, timeout=5).json()
    assert [i["package"]["reference"] for i in gmp_inbox] == [package["reference"]]
    assert len(requests.get(f"{base}/api/v1/inbox", headers=mps, timeout=5).json()) == 1
    assert requests.get(f"{base}/api/v1/inbox", headers=wmp, timeout=5).json() == []

    # GMP's webhook fails twice; the worker's scheduler retries it after 1 s and 2 s.
    def gmp_delivered():
        rows = requests.get(f"{base}/api/v1/packages/{package['id']}/disseminations", headers=issuer, timeout=5)
        row = {r["organisation"]: r for r in rows.json()}["GMP"]
        return row if row["status"] == "delivered" else None

    row = wait_for(gmp_delivered, timeout=30)
    assert row["delivery_channel"] == "webhook" and row["delivery_attempts"] == 3
    assert len(webhook.calls) == 3
    # Signed by Standard Webhooks with GMP's own secret, given once when the webhook was set;
    # every try of the one message has the same webhook-id.
    secret = patched.json()["webhook_secret"]
    assert all(Webhook(secret).verify(body, headers) for headers, body in webhook.signed)
    assert len({headers["webhook-id"] for headers, _ in webhook.signed}) == 1

    acknowledged = requests.post(
        f"{base}/api/v1/disseminations/{gmp_inbox[0]['id']}/acknowledge", headers=gmp, timeout=5
    )
    assert acknowledged.json()["status"] == "acknowledged"

    # Ctrl-C stops every process make run started.
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)


def test_make_run_closes_the_loop_and_chases_the_silent_force(running, redis_conn, mailbox):
    """A package issued to two forces makes two returns; GMP files, MPS stays silent and is
    chased up a seconds-scale ladder by the real cron and worker, and listed overdue; a Redis
    flush in the middle loses nothing. A second worker and a second cron process sweep at the
    same time, and still every step goes once."""
    base, env, process, log = running
    extra = [
        subprocess.Popen(
            [sys.executable, "-m", "services", command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for command in ("worker", "cron")
    ]
    try:
        _close_the_loop(base, env, redis_conn, mailbox)
    finally:
        for child in extra:
            os.killpg(child.pid, signal.SIGINT)
            child.wait(timeout=20)


def _close_the_loop(base, env, redis_conn, mailbox):
    outcomes = env["OUTCOMES_URL"]
    issuer = {"Authorization": "Bearer " + make_token(env, "NCLCC", "issuer,admin")}
    gmp = {"Authorization": "Bearer " + make_token(env, "GMP", "recipient")}
    ladder = {
        "steps": [
            {"name": "reminder", "offset_seconds": -12, "notify": "recipient"},
            {"name": "due_today", "offset_seconds": 0, "notify": "recipient"},
            {"name": "overdue", "offset_seconds": 4, "notify": "recipient"},
            {"name": "escalation", "offset_seconds": 8, "notify": "escalation"},
            {"name": "centre_escalation", "offset_seconds": 12, "notify": "centre"},
        ]
    }
    assert requests.put(f"{outcomes}/api/v1/chase-policy", json=ladder, headers=issuer, timeout=5).status_code == 200
    from datetime import UTC, datetime, timedelta

    due = datetime.now(UTC) + timedelta(seconds=22)
    body = {
        "title": "Line into Stockport",
        "summary": "Runner addresses attached.",
        "threat_area": "county_lines",
        "classification": "OFFICIAL",
        "source_evaluation": 1,
        "intelligence_assessment": "A",
        "handling_code": "P",
        "recipients": ["GMP", "MPS"],
        "outcome_due_at": due.isoformat(),
    }
    package = requests.post(f"{base}/api/v1/packages", json=body, headers=issuer, timeout=5).json()
    assert requests.post(f"{base}/api/v1/packages/{package['id']}/issue", headers=issuer, timeout=5).ok

    def returns_listed():
        rows = requests.get(f"{outcomes}/api/v1/returns?package={package['id']}", headers=issuer, timeout=5).json()
        return {r["organisation"]: r for r in rows} if len(rows) == 2 else None

    returns = wait_for(returns_listed, timeout=20)
    gmp_return, mps_return = returns["GMP"]["id"], returns["MPS"]["id"]
    outcome = {
        "status": "final",
        "actions": ["enforcement"],
        "priority": "high",
        "tasking_forum": "GMP tasking",
        "results": {"arrests": 2, "charges": 2},
        "attribution": "direct",
        "strands": ["pursue"],
        "intelligence_feedback": {"usefulness": 5, "accuracy": "confirmed", "timeliness": "timely"},
    }
    filed = requests.post(f"{outcomes}/api/v1/returns/{gmp_return}/outcomes", json=outcome, headers=gmp, timeout=5)
    assert filed.status_code == 201, filed.text

    # The reminder goes first; then Redis loses everything it held.
    def step_sent(return_id, step):
        log_rows = requests.get(f"{outcomes}/api/v1/returns/{return_id}/chases", headers=issuer, timeout=5).json()
        return any(row["step"] == step and row["result"] == "sent" for row in log_rows)

    wait_for(lambda: step_sent(mps_return, "reminder"), timeout=30)

    # Both recipients have their delivery notice first: this flush is about the chase ladder. (A
    # notice lost with Redis is re-sent by the notification sweep, minutes later: see
    # tests/dissemination/test_events.py.)
    def both_delivered():
        rows = requests.get(f"{base}/api/v1/packages/{package['id']}/disseminations", headers=issuer, timeout=5)
        return all(row["delivery_status"] == "delivered" for row in rows.json())

    wait_for(both_delivered, timeout=30)
    redis_conn.flushdb()

    def ladder_done():
        rows = requests.get(f"{outcomes}/api/v1/returns/{mps_return}/chases", headers=issuer, timeout=5).json()
        return rows if len(rows) == 5 and all(row["result"] != "pending" for row in rows) else None

    mps_log = wait_for(ladder_done, timeout=90, every=0.5)
    # Every step once, in order. On a loaded machine a sweep can come late enough for two steps
    # to fall due together: the earlier one is then logged as superseded, never sent twice.
    assert [row["step"] for row in mps_log] == ["reminder", "due_today", "overdue", "escalation", "centre_escalation"]
    assert all(
        row["result"] == "sent" or (row["result"] == "skipped" and "superseded" in row["error"]) for row in mps_log
    ), [(r["step"], r["result"], r["attempts"], r["error"]) for r in mps_log]
    assert [row["result"] for row in mps_log if row["step"] in ("reminder", "centre_escalation")] == ["sent"] * 2
    gmp_log = requests.get(f"{outcomes}/api/v1/returns/{gmp_return}/chases", headers=issuer, timeout=5).json()
    assert all(row["step"] == "reminder" for row in gmp_log)  # nothing after GMP's final return

    overdue = requests.get(f"{outcomes}/api/v1/returns?status=overdue", headers=issuer, timeout=5).json()
    assert [r["id"] for r in overdue] == [mps_return]
    to = [m["To"] for m in mailbox() if f"<chase_{mps_return}_" in m["Message-ID"]]
    sent = [row for row in mps_log if row["result"] == "sent"]
    assert len(to) == len(sent)  # one message per step sent, none twice
    assert to.count("outcomes.mps@directory.invalid") == sum(row["notify"] == "recipient" for row in sent)

    # The dissemination service learnt of GMP's return; the metrics show the whole loop.
    def gmp_returned():
        row = requests.get(f"{base}/api/v1/disseminations/{gmp_return}", headers=issuer, timeout=5).json()
        return row["status"] == "returned"

    wait_for(gmp_returned, timeout=20)
    leader = {"Authorization": "Bearer " + make_token(env, "NCLCC", "leader")}
    metrics = env["METRICS_URL"]

    def package_figures():
        body = requests.get(f"{metrics}/api/v1/metrics/packages/{package['id']}", headers=leader, timeout=5)
        if body.status_code != 200:
            return None
        body = body.json()
        # The delivery events may have waited for the outbox sweep after Redis was flushed.
        done = (
            body["compliance"]["overdue_now"] == 1
            and body["compliance"]["final"] == 1
            and body["reach"]["delivered"] == 2
        )
        return body if done else None

    figures = wait_for(package_figures, timeout=40)
    assert figures["verdict"] == "actioned" and figures["results"]["direct"]["arrests"] == 2
    assert figures["reach"]["recipients"] == 2 and figures["reach"]["delivered"] == 2
    assert figures["quality"]["accuracy"]["confirmed"] == 1
    mps = requests.get(f"{metrics}/api/v1/metrics/organisations/MPS", headers=leader, timeout=5).json()
    assert mps["overdue_now"] >= 1 and mps["returned"] == 0
    summary = requests.get(f"{metrics}/api/v1/metrics/summary", headers=leader, timeout=5).json()
    assert summary["funnel"]["actioned"] >= 1
