"""`make demo` against the system as `make run` starts it: a small world (15 packages) loaded
through the real APIs under the demo clock, the chase sweep run day by day, the events relayed to
the metrics service by the real worker; then loaded again, which must create nothing."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests

from shared.settings import ROOT
from tests.e2e.test_make_run import make_token, running  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

DEMO = ["--packages", "15", "--seed", "3"]


def load_demo(env) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", *DEMO], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def every_return(env, headers) -> list[dict]:
    response = requests.get(f"{env['OUTCOMES_URL']}/api/v1/returns?per_page=100", headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()


def chases(env, headers, returns) -> dict[str, list[dict]]:
    return {
        r["id"]: requests.get(
            f"{env['OUTCOMES_URL']}/api/v1/returns/{r['id']}/chases", headers=headers, timeout=10
        ).json()
        for r in returns
    }


def test_demo_loads_a_year_of_history_and_a_second_run_creates_nothing(running):  # noqa: F811
    base, env, process, log = running
    issuer = {"Authorization": "Bearer " + make_token(env, "NCLCC", "issuer,admin")}
    leader = {"Authorization": "Bearer " + make_token(env, "NCLCC", "leader")}

    first = load_demo(env)
    assert "15 packages" in first and "0 were replays" in first

    returns = every_return(env, issuer)
    today = datetime.now(UTC)
    issued = [datetime.fromisoformat(r["issued_at"]) for r in returns]
    # A year of history, not today's: packages issued across many months of the past year.
    assert len({(d.year, d.month) for d in issued}) >= 6
    assert all((today - d).days <= 366 for d in issued) and (today - min(issued)).days > 180
    finals = [r for r in returns if r["current"] and r["current"]["status"] == "final"]
    assert len(finals) >= 10
    late = [r for r in finals if r["returned_at"] > r["due_at"]]
    on_time = [r for r in finals if r["returned_at"] <= r["due_at"]]
    assert late and on_time  # a spread of lateness
    assert any(r["versions"] >= 2 for r in finals)  # interim then final, or amended
    assert any(r["current"]["actions"] == ["no_action"] and r["current"]["no_action_reason"] for r in finals)
    assert any(r["onward_depth"] == 1 for r in returns)  # passed on, and the onward return filed

    # Late returns were chased by the ladder before they came in, at the time it would have.
    logs = chases(env, issuer, returns)
    sent = [(r, c) for r in late for c in logs[r["id"]] if c["result"].startswith("sent")]
    assert sent
    assert all(datetime.fromisoformat(c["sent_at"]) <= datetime.fromisoformat(r["returned_at"]) for r, c in sent)

    # The metrics service got it all through the events: returns across months, onward results.
    summary = requests.get(
        f"{env['METRICS_URL']}/api/v1/metrics/summary",
        params={"from": f"{today.year - 1}-{today.month:02d}", "to": f"{today.year}-{today.month:02d}"},
        headers=leader,
        timeout=10,
    ).json()
    assert summary["packages_issued"] == 15
    assert sum(1 for month in summary["trend"] if month["final"]) >= 6
    assert 0 < summary["funnel"]["final"] <= summary["funnel"]["returned"]
    assert summary["funnel"]["final"] == len(finals)
    assert any(summary["results"]["onward"].values())
    rows = requests.get(f"{env['METRICS_URL']}/api/v1/metrics/packages?per_page=100", headers=leader, timeout=10)
    assert rows.status_code == 200

    # Again: every POST is a replay, nothing new anywhere.
    second = load_demo(env)
    assert "0 requests made something new" in second
    again = every_return(env, issuer)
    assert [(r["id"], r["versions"]) for r in again] == [(r["id"], r["versions"]) for r in returns]
    assert Counter(c["result"] for c in sum(chases(env, issuer, again).values(), [])) == Counter(
        c["result"] for c in sum(logs.values(), [])
    )
    packages = requests.get(f"{base}/api/v1/packages?per_page=100", headers=issuer, timeout=10).json()
    assert len(packages) == 15


def test_demo_says_clearly_when_the_system_is_not_running(tmp_path):
    import os

    from shared.devredis import free_port

    env = os.environ.copy()
    env.update(DISSEMINATION_URL=f"http://127.0.0.1:{free_port()}", RUN_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", *DEMO], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "the system is not running" in done.stderr and "make run" in done.stderr
