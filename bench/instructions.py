"""``make bench-instructions``: the CPU one request costs, counted in instructions, not seconds.

The machines this project is measured on run the same code 20-40% faster or slower from one
minute to the next, so a change of 5-10% in a request's CPU does not show in ``make bench``'s
rates, nor in timed loops. valgrind's callgrind counts the instructions a process executes:
the same count for the same code and inputs, whatever else the machine is doing.

For each path (a package's metrics read, an outcome filed), it runs a process that builds the
service's app as the tests do (its schema ``test_<service>`` on DATABASE_URL: PostgreSQL only,
the tests' SQLite files live in a directory that goes with them) and sends the request through
the whole Flask app (its test client, whose own work is counted too: no gunicorn, no network)
5 times, then N more times; a warning or error logged meanwhile fails the run. It
runs that process under callgrind with N = 0 and N = BENCH_REQUESTS (default 100) and prints the
difference divided by N: the instructions one request costs in the app's process, start-up left
out. The database's own work is not counted (another process). gunicorn's access log line is
counted on its own, as ``access-line``.

A filing enqueues its relay in Redis (REDIS_URL, or a redis-server of the run's own when it is
not set); the relay never runs. The requests need a world to run in: a package in the metrics
read model, a return to file against, the same ones each time (the first by reference: the
world's ids are new each time, its references are not). ``tests/metrics/test_clearance.py``'s first test leaves
one in the tests' schemas, and this runs it first (``python -m bench.instructions --no-setup``
keeps what is there).

    DATABASE_URL=postgresql://... make bench-instructions   # needs valgrind (Debian: valgrind)
    BENCH_REQUESTS=50 make bench-instructions                # quicker, a little less exact

Each run under callgrind takes one to three minutes; two run at a time. Compare two commits by
running it in a worktree of each (``git worktree add /tmp/base <commit>``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.settings import ROOT

SETUP_TEST = "tests/metrics/test_clearance.py::test_a_package_above_clearance_is_not_found_and_the_refusal_audited"
PATHS = ("read", "file", "access-line")
WARM_UP = 5


class Complaints(logging.Handler):
    """Every WARNING or worse the measured process logs: a request that failed quietly (a 201
    whose after-commit step could not reach Redis, say) would be counted as a cheap one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}"[:300])


def run_requests(path: str, count: int) -> None:
    """The measured process: ``path``'s request WARM_UP + count times, in-process."""
    os.environ["APP_ENV"] = "test"  # the development secrets, as the tests have them
    if path == "access-line":
        return run_access_lines(count)
    os.environ["LOG_LEVEL"] = "WARNING"  # the request's own lines are not what is measured
    from sqlalchemy import text

    from shared.auth import mint_token

    service = "metrics" if path == "read" else "outcomes"
    os.environ[f"{service.upper()}_DATABASE_SCHEMA"] = f"test_{service}"
    if service == "metrics":
        from services.metrics import create_app
    else:
        from services.outcomes import create_app

        os.environ["OUTCOMES_SUBSCRIBERS"] = "metrics"
        os.environ["METRICS_URL"] = "http://127.0.0.1:9"  # the relay is enqueued, never run
    app = create_app({"settings": {"testing": True}})
    settings = app.extensions["settings"]
    with app.extensions["database"].engine.connect() as connection:
        if service == "metrics":
            package = connection.execute(
                text(
                    "SELECT package_id FROM packages WHERE issued_at IS NOT NULL "
                    "AND classification = 'OFFICIAL-SENSITIVE' ORDER BY reference LIMIT 1"
                )
            ).scalar()
            org, roles, url, body = "NCLCC", ["leader"], f"/api/v1/metrics/packages/{package}", None
        else:
            return_id, org = connection.execute(
                text(
                    "SELECT id, organisation FROM expected_returns WHERE close_reason IS NULL "
                    "ORDER BY reference, organisation LIMIT 1"
                )
            ).one()
            from bench.http_load import OUTCOME

            roles, url, body = ["recipient"], f"/api/v1/returns/{return_id}/outcomes", json.dumps(OUTCOME)
    token = mint_token(settings, sub=f"{roles[0]}@bench", org=org, roles=roles, clearance="OFFICIAL-SENSITIVE")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client = app.test_client()
    expected = 200 if service == "metrics" else 201
    complaints = Complaints()
    logging.getLogger().addHandler(complaints)
    for number in range(WARM_UP + count):
        response = client.get(url, headers=headers) if body is None else client.post(url, headers=headers, data=body)
        if number < WARM_UP and response.status_code != expected:
            raise SystemExit(f"{path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    if complaints.lines:
        raise SystemExit(f"{path}: {len(complaints.lines)} warnings or errors logged, e.g. {complaints.lines[0]}")


def run_access_lines(count: int) -> None:
    """gunicorn's access log line for a metrics read, as ``shared.gunicorn_conf`` writes it."""
    import datetime
    import logging

    from gunicorn.config import Config

    from shared.gunicorn_conf import MaskingLogger

    os.environ["APP_ENV"] = "production"  # JSON lines
    os.environ["LOG_LEVEL"] = "INFO"  # the line is written, as gunicorn writes it
    os.environ.setdefault("JWT_SECRET", "bench-" * 8)
    config = Config()
    config.set("accesslog", "-")
    config.set("proc_name", "services.metrics:create_app()")
    logger = MaskingLogger(config)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life

    class Answer:
        status, sent = "200 OK", 1234
        headers = [("Content-Type", "application/json"), ("X-Request-ID", "0123456789abcdef")]

    path = "/api/v1/metrics/packages/bd67d1a1-ed1d-4fc3-a21f-8c47c2aec028"
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": path, "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1"}
    for _ in range(WARM_UP + count):
        logger.access(Answer(), None, environ | {"HTTP_USER_AGENT": "wrk"}, datetime.timedelta(milliseconds=4))


def instructions(path: str, count: int, out_dir: Path) -> int:
    """The instructions the measured process executed, under callgrind."""
    log = out_dir / f"{path}-{count}.log"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir / f'{path}-{count}.callgrind'}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--run",
        path,
        str(count),
    ]
    # A fixed hash seed: with a random one, the dicts' and sets' work (and so the count) moves
    # by a few percent from one run of the same code to the next.
    environment = os.environ | {"PYTHONHASHSEED": "0"}
    with log.open("w") as output:
        finished = subprocess.run(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT, timeout=1800
        )
    text = log.read_text()
    if finished.returncode != 0:
        raise SystemExit(f"{path} x{count} failed (rc {finished.returncode}); its output:\n{text[-3000:]}")
    found = re.search(r"I\s+refs:\s+([\d,]+)", text)
    if not found:
        raise SystemExit(f"no instruction count in {log}")
    return int(found.group(1).replace(",", ""))


def setup() -> None:
    print(f"setting up the world: pytest {SETUP_TEST}", flush=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", SETUP_TEST]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the setup test failed:\n{(finished.stdout + finished.stderr)[-3000:]}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"]:
        run_requests(argv[1], int(argv[2]))
        return 0
    if not shutil.which("valgrind"):
        print("make bench-instructions needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if not (os.environ.get("DATABASE_URL") or "").startswith("postgresql"):
        print("make bench-instructions runs on PostgreSQL: set DATABASE_URL", file=sys.stderr)
        return 2
    count = int(os.environ.get("BENCH_REQUESTS", "100"))
    if count < 1:
        print("BENCH_REQUESTS is a number of requests, 1 or more", file=sys.stderr)
        return 2
    redis = None
    if not os.environ.get("REDIS_URL"):
        # A filing's after-commit step enqueues its relay: into a Redis of this run's own, never
        # into the one `make run` uses.
        from shared.devredis import EmbeddedRedis

        redis = EmbeddedRedis().start()
        os.environ["REDIS_URL"] = redis.url
    try:
        if "--no-setup" not in argv:
            setup()
        out_dir = Path(tempfile.mkdtemp(prefix="nclcc-instructions-"))
        print(f"callgrind runs in {out_dir}: each path with 0 and {count} requests after {WARM_UP} warm-up", flush=True)
        runs = [(path, n) for path in PATHS for n in (0, count)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            counted = dict(zip(runs, pool.map(lambda run: instructions(run[0], run[1], out_dir), runs), strict=True))
    finally:
        if redis is not None:
            redis.stop()
    print("\n| request | instructions per request (in the app's process) |\n|---|---|")
    for path in PATHS:
        per_request = (counted[(path, count)] - counted[(path, 0)]) / count
        print(f"| {path} | {per_request / 1e6:.3f} M |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
