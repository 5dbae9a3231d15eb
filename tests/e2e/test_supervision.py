"""`make run` (tools.run) under supervisord, as an operator meets it: a killed process comes
back while the others keep serving, and Ctrl-C stops everything, quietly, leaving nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from rq import Queue
from rq.job import Job, JobStatus

from shared.devredis import free_port
from shared.outbox import sweep_outbox
from shared.queue import redis_connection
from shared.settings import ROOT
from tests.processes import Process, processes_with_env, wait_for

pytestmark = pytest.mark.e2e

PROGRAMS = ("dissemination", "outcomes", "metrics", "worker", "cron")


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Run:
    """One `python -m tools.run`, with ports, RUN_DIR and embedded Redis of its own."""

    def __init__(self, tmp_path):
        self.run_dir = tmp_path / "run"
        ports = {name: free_port() for name in ("dissemination", "outcomes", "metrics")}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # make run's own Redis
        env.update(RUN_DIR=str(self.run_dir), PYTHONUNBUFFERED="1")
        for name, port in ports.items():
            env[f"{name.upper()}_PORT"] = str(port)
            env[f"{name.upper()}_URL"] = self.urls[name]
        env["DISSEMINATION_SUBSCRIBERS"] = "outcomes,metrics"
        env["OUTCOMES_SUBSCRIBERS"] = "dissemination,metrics"
        self.process = Process([sys.executable, "-m", "tools.run"], env, tmp_path / "run.log")

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.run_dir / "supervisord.conf"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", program).strip() or 0)

    def states(self) -> dict[str, str]:
        return dict(line.split()[:2] for line in self.ctl("status").splitlines() if line.strip())

    @property
    def redis_url(self) -> str:
        found = re.search(r"embedded redis-server on (\S+)", self.process.output)
        assert found, self.process.output[-2000:]
        return found[1]


@pytest.fixture
def run(clean_db, tmp_path):
    started = Run(tmp_path)
    yield started
    started.process.close()


def finished(redis_url: str, job_id: str) -> bool:
    return Job.fetch(job_id, connection=redis_connection(redis_url)).get_status() == JobStatus.FINISHED


def test_killed_processes_come_back_and_ctrl_c_leaves_nothing_behind(run):
    run.process.wait_for_output("scheduler: moving due jobs of", timeout=120)
    run.process.wait_for_output("scheduling", timeout=60)
    wait_for(lambda: all(answers(url) for url in run.urls.values()), timeout=60, what="the three services")
    assert set(run.states().items()) == {(name, "RUNNING") for name in PROGRAMS}

    # The worker, the cron process and one gunicorn master, killed as the OOM killer would.
    killed = {name: run.pid(name) for name in ("worker", "cron", "dissemination")}
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    # The others keep serving meanwhile.
    assert answers(run.urls["outcomes"]) and answers(run.urls["metrics"])

    def all_back():
        states = run.states()
        return all(states.get(name) == "RUNNING" and run.pid(name) not in (0, pid) for name, pid in killed.items())

    wait_for(all_back, timeout=90, every=1, what="the killed programs running again")
    wait_for(lambda: answers(run.urls["dissemination"]), timeout=60, what="dissemination answering again")
    assert answers(run.urls["outcomes"]) and answers(run.urls["metrics"])
    # Each exit reported, once.
    for name in killed:
        assert len(run.process.lines_with(f"exited: {name} (terminated by SIGKILL; not expected)")) == 1

    # The restarted worker works, and its scheduler took the dead one's lock over.
    queue = Queue("dissemination", connection=redis_connection(run.redis_url))
    now = queue.enqueue(sweep_outbox, "dissemination")
    later = queue.enqueue_in(timedelta(seconds=1), sweep_outbox, "dissemination")
    wait_for(lambda: finished(run.redis_url, now.id), timeout=60, what="a job run by the restarted worker")
    wait_for(lambda: finished(run.redis_url, later.id), timeout=60, what="a delayed job moved by its scheduler")
    # Not after RQ's 61 s lease: once the dead scheduler had been silent for 10 s.
    assert run.process.lines_with("taken over from a scheduler gone silent")

    # Ctrl-C: everything stops, the embedded Redis last, quietly, and make run exits 0.
    before = len(run.process.output)
    run.process.signal(signal.SIGINT)
    assert run.process.wait(timeout=45) == 0
    assert "Traceback" not in run.process.output, run.process.output[-3000:]
    stopping = run.process.output[before:]
    assert not re.search(r"Connection refused|Error 111|ConnectionError|unreachable", stopping), stopping
    # Nothing left: no program, gunicorn worker, scheduler or Redis of this run.
    assert processes_with_env("RUN_DIR", str(run.run_dir)) == []
    for url in run.urls.values():
        assert not answers(url)
