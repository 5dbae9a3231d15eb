"""``make bench``: the two hot paths under load, against the least they could cost.

Starts the whole system as ``make run`` does (``drills.system.System``: its own RUN_DIR, ports,
redis-server, and a database of its own, ``<db>_bench`` beside DATABASE_URL's, or SQLite files
without it), issues BENCH_PACKAGES packages (default 100) to one force, and starts the reference
app (bench/reference_app.py: gunicorn, 4 sync workers, same database; REFERENCE_THREADS=4 serves it
with 4 threads in each, as the services are). Then, in alternating
rounds (BENCH_ROUNDS, default 3, each path BENCH_SECONDS, default 10 s, per app), ``wrk -t2
-c16`` spreads requests over the 100 returns / packages:

- file an outcome: ``POST /api/v1/returns/{id}/outcomes`` (a final return, then amendments),
  against the reference's check-JWT, validate, insert, commit;
- read a package's metrics: ``GET /api/v1/metrics/packages/{id}``, against the reference's
  check-JWT, select, insert an audit row, commit.

It prints each round's throughput and p50/p99 per path and app, the ratio (this project /
reference) of the medians over rounds and of each round's two sides, the event lag (an outcome
filed -> its event applied by the metrics service, p50/p95 over the filings of the load), the
time the metrics service took to drain each filing round's backlog (within DRAIN_TIMEOUT), and
the CPU per request of each process (``CpuMeter``: where the two cores go). Every round is
bounded in time; the whole run in count (rounds) and time (BENCH_SECONDS).

    make bench                                   # PostgreSQL when DATABASE_URL is set
    BENCH_ROUNDS=1 BENCH_SECONDS=5 make bench    # a quick look
    BENCH_PROFILE=1 make bench                   # also py-spy flame graphs of the services
    BENCH_PROFILE=cpu make bench                 # the same, only samples holding the GIL (CPU)
    WEB_WORKERS=4 make bench                     # each service's gunicorn workers (make run: 2)
    WEB_THREADS=1 make bench                     # threads in each (make run: 4; 1 = sync workers)
    REFERENCE_THREADS=4 make bench               # the reference served as the services are
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import make_url

from drills.load import issue_package
from drills.receiver import wait_until
from drills.system import SERVICES, System
from shared.devredis import free_port
from shared.settings import ROOT

FORCE = "GMP"
THREADS, CONNECTIONS = 2, 16
# The services' own timings, as make run has them: sweeps at their defaults, no drill ladder. Logs
# as deployed (one JSON object per line): development's console renderer costs more per line.
BENCH_SETTINGS: dict[str, str] = {"LOG_FORMAT": "json"}
OUTCOME = {
    "status": "final",
    "actions": ["enforcement"],
    "priority": "high",
    "tasking_forum": "GMP tasking",
    "results": {"arrests": 2, "cash_seized_gbp": 1500},
    "attribution": "direct",
    "strands": ["pursue"],
    "intelligence_feedback": {"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"},
}


@dataclass
class Round:
    path: str
    app: str
    number: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    started: datetime
    ended: datetime
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    drain: Drain | None = None
    cpu_window: float = 1.0  # seconds between the CPU meter's two readings


@dataclass
class Drain:
    """The events a filing round left for the metrics service, and how long they took to apply
    once the load stopped (None: not within DRAIN_TIMEOUT)."""

    left: int
    seconds: float | None = None


DRAIN_TIMEOUT = 120


@dataclass
class Results:
    rounds: list[Round] = field(default_factory=list)

    def of(self, path: str, app: str) -> list[Round]:
        return [r for r in self.rounds if r.path == path and r.app == app]


def bench_database_url() -> str | None:
    base = os.environ.get("DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        return None
    url = make_url(base)
    return url.set(database=f"{url.database}_bench").render_as_string(hide_password=False)


# --- the load generator ------------------------------------------------------------------------

WRK_SCRIPT = """
local paths = {%(paths)s}
local method = "%(method)s"
local body = %(body)s
local headers = {["Authorization"] = "Bearer %(token)s", ["Content-Type"] = "application/json"}
local n = 0
function init(args)
  n = math.random(#paths)
end
function request()
  n = n %% #paths + 1
  return wrk.format(method, paths[n], headers, body)
end
"""

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(base: str, paths: list[str], method: str, token: str, body: str | None, seconds: int, workdir: Path):
    script = workdir / f"load-{uuid.uuid4().hex[:8]}.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "paths": ", ".join(lua_string(p) for p in paths),
            "method": method,
            "body": lua_string(body) if body is not None else "nil",
            "token": token,
        }
    )
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), base]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(g) for g in socket_errors.groups())
    return (
        float(rate.group(1)) if rate else 0.0,
        latency("50"),
        latency("99"),
        failed,
        int(total.group(1)) if total else 0,
    )


# --- the reference app -------------------------------------------------------------------------


class Reference:
    def __init__(self, system: System, package_ids: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(system.env)
        if system.database_url:
            self.env["REFERENCE_DATABASE_URL"] = system.database_url
        else:
            self.env["REFERENCE_DATABASE_URL"] = f"sqlite:///{system.run_dir / 'var' / 'reference.db'}"
        self.package_ids = package_ids
        self.log = open(system.run_dir / "reference.log", "w")  # noqa: SIM115 - open while it runs
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from bench.reference_app import create_tables; create_tables({self.package_ids!r})",
            ],
            env=self.env,
            cwd=ROOT,
            check=True,
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "4",
                "--threads",
                os.environ.get("REFERENCE_THREADS") or "1",
                "bench.reference_app:create_app()",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            try:
                return requests.get(self.url + "/packages/x", timeout=2).status_code in (401, 404)
            except requests.RequestException:
                return False

        if not wait_until(up, timeout=60, every=0.3):
            raise SystemExit("the reference app did not start: see reference.log in the run directory")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()


# --- the world ---------------------------------------------------------------------------------


def issue_packages(system: System, count: int) -> list[tuple[str, str]]:
    """``count`` packages issued to FORCE; returns (package id, return id) pairs."""
    api, issuer = system.api, system.tokens["issuer"]
    due = datetime.now(UTC) + timedelta(days=28)
    package_ids = [issue_package(system, f"Bench package {index}", [FORCE], due)["id"] for index in range(count)]
    returns: dict[str, str] = {}

    def listed() -> bool:
        page, found = 1, {}
        while True:
            rows = api.call("GET", "outcomes", f"/api/v1/returns?org={FORCE}&per_page=100&page={page}", issuer).json()
            found.update({row["package_id"]: row["id"] for row in rows})
            if len(rows) < 100:
                break
            page += 1
        returns.update(found)
        return all(p in returns for p in package_ids)

    if not wait_until(listed, timeout=300, every=1.0):
        raise SystemExit("the returns were not all listed within 300 s")
    leader = system.tokens["leader"]
    if not wait_until(
        lambda: all(
            requests.get(
                f"{system.urls['metrics']}/api/v1/metrics/packages/{p}",
                headers={"Authorization": f"Bearer {leader}"},
                timeout=10,
            ).status_code
            == 200
            for p in package_ids[-3:]
        ),
        timeout=300,
        every=1.0,
    ):
        raise SystemExit("the metrics service did not see the packages within 300 s")
    return [(p, returns[p]) for p in package_ids]


# --- event lag ---------------------------------------------------------------------------------


def filing_lags(system: System, windows: list[tuple[datetime, datetime]]) -> list[float]:
    """Seconds from each outcome.filed event's commit in the outcomes service to its being applied
    by the metrics service, for the filings made during the load's windows."""
    filed = {
        str(row[0]): row[1]
        for row in system.store.rows(
            "outcomes", "SELECT id, occurred_at FROM {outbox_events} WHERE type = 'outcome.filed'"
        )
    }
    applied = {
        str(row[0]): row[1]
        for row in system.store.rows(
            "metrics", "SELECT event_id, received_at FROM {inbox_events} WHERE type = 'outcome.filed'"
        )
    }
    lags = []
    for event_id, occurred in filed.items():
        occurred = _aware(occurred)
        if event_id in applied and any(start <= occurred <= end for start, end in windows):
            lags.append((_aware(applied[event_id]) - occurred).total_seconds())
    return lags


def backlog(system: System) -> int:
    filed = system.store.scalar("outcomes", "SELECT count(*) FROM {outbox_events} WHERE type = 'outcome.filed'")
    applied = system.store.scalar("metrics", "SELECT count(*) FROM {inbox_events} WHERE type = 'outcome.filed'")
    return int(filed or 0) - int(applied or 0)


def _aware(moment):
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- profiling ---------------------------------------------------------------------------------


# py-spy installed in this virtualenv (pip install py-spy) or on PATH.
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


class Profiler:
    """py-spy on every gunicorn worker and the RQ worker while the project's rounds run."""

    def __init__(self, system: System, out_dir: Path, cpu_only: bool = False):
        self.system, self.out_dir = system, out_dir
        # --idle: where the time goes, waits included; --gil: only what holds the interpreter.
        self.mode = "--gil" if cpu_only else "--idle"
        self.running: list[subprocess.Popen] = []

    def start(self, label: str, seconds: int) -> None:
        if not PY_SPY:
            return
        for name, pid in service_pids(self.system).items():
            out = self.out_dir / f"{label}-{name}.txt"
            self.running.append(
                subprocess.Popen(
                    [
                        PY_SPY,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(seconds),
                        "--output",
                        str(out),
                        "--format",
                        "raw",
                        self.mode,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def wait(self) -> None:
        for process in self.running:
            process.wait(timeout=120)
        self.running.clear()


def service_pids(system: System) -> dict[str, int]:
    """The processes doing the work: each gunicorn's workers and the RQ worker."""
    pids: dict[str, int] = {}
    for name in (*SERVICES, "worker"):
        pid = system.control.pid(name)
        if not pid:
            continue
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        if name == "worker" or not children:
            pids[name] = pid
        for index, child in enumerate(children):
            pids[f"{name}-{index}"] = int(child)
    return pids


# --- CPU by process ------------------------------------------------------------------------------

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def process_ticks(pid: int) -> int:
    """CPU time (user + system, in clock ticks) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (the stat fields 14 and 15)


def pids_named(name: str) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()]


def process_groups(system: System, reference: Reference | None) -> dict[str, list[int]]:
    """Who spends the machine's CPU: each service's gunicorn (master and workers), the RQ worker,
    cron, PostgreSQL (every backend: during the project's rounds the reference's are idle), Redis,
    and the reference app. (wrk, this process's child, is counted by ``CpuMeter``.)"""
    groups: dict[str, list[int]] = {}
    for name in (*SERVICES, "worker", "cron"):
        pid = system.control.pid(name)
        if pid:
            children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
            groups[name] = [pid, *map(int, children)]
    if reference and reference.process:
        children = subprocess.run(
            ["pgrep", "-P", str(reference.process.pid)], capture_output=True, text=True
        ).stdout.split()
        groups["reference"] = [reference.process.pid, *map(int, children)]
    groups["postgres"] = pids_named("postgres")
    groups["redis"] = pids_named("redis-server")
    return groups


class CpuMeter:
    """CPU seconds each group of processes spent between ``start`` and ``stop``. A process that
    started in between counts whole (a pool's new connection: its PostgreSQL backend); one that
    ended in between is not counted (its CPU is gone from /proc)."""

    def __init__(self, system: System, reference: Reference | None):
        self.system, self.reference = system, reference
        self.before: dict[int, int] = {}
        self.children_before = 0.0

    @staticmethod
    def children_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has ended
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self.children_before = self.children_seconds()
        self.before = {
            pid: process_ticks(pid) for pids in process_groups(self.system, self.reference).values() for pid in pids
        }

    def stop(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for name, pids in process_groups(self.system, self.reference).items():
            ticks = sum(process_ticks(pid) - self.before.get(pid, 0) for pid in pids)
            spent[name] = ticks / TICKS_PER_SECOND
        spent["wrk"] = self.children_seconds() - self.children_before
        return spent


# --- the run -----------------------------------------------------------------------------------


def main() -> int:
    if not shutil.which("wrk"):
        print("make bench needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    count = int(os.environ.get("BENCH_PACKAGES", "100"))
    profile = os.environ.get("BENCH_PROFILE") in ("1", "cpu")
    asked = {name.strip() for name in os.environ.get("BENCH_PATHS", "file,read").split(",") if name.strip()}
    measured = [path for path in ("file", "read") if path in asked]
    if not measured or asked - {"file", "read"}:
        print(f"BENCH_PATHS names file, read or both (file,read), not {sorted(asked)}", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="nclcc-bench-"))
    database_url = bench_database_url()
    print(
        f"make bench: run directory {run_dir}; database {database_url or 'SQLite'}; "
        f"{os.environ.get('WEB_WORKERS') or 2} gunicorn workers per service (WEB_WORKERS) of "
        f"{os.environ.get('WEB_THREADS') or 4} threads (WEB_THREADS); the reference's 4 workers of "
        f"{os.environ.get('REFERENCE_THREADS') or 1} (REFERENCE_THREADS)",
        flush=True,
    )
    system = System(run_dir, settings=BENCH_SETTINGS, ladder=None, database_url=database_url)
    # A bench stopped with SIGTERM (kill, a CI timeout) stops what it started, as Ctrl-C does:
    # without this, its supervisord and gunicorns outlive it and load the next run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reference = None
    results = Results()
    try:
        system.start()
        pairs = issue_packages(system, count)
        print(f"issued {len(pairs)} packages to {FORCE}; starting the reference app", flush=True)
        reference = Reference(system, [p for p, _ in pairs])
        reference.start()
        token_force, token_leader = system.tokens[FORCE], system.tokens["leader"]
        body = __import__("json").dumps(OUTCOME)
        paths = {
            ("file", "project"): (system.urls["outcomes"], [f"/api/v1/returns/{r}/outcomes" for _, r in pairs]),
            ("file", "reference"): (reference.url, [f"/returns/{r}/outcomes" for _, r in pairs]),
            ("read", "project"): (system.urls["metrics"], [f"/api/v1/metrics/packages/{p}" for p, _ in pairs]),
            ("read", "reference"): (reference.url, [f"/packages/{p}" for p, _ in pairs]),
        }
        if profile and not PY_SPY:
            print("BENCH_PROFILE=1 needs py-spy (pip install py-spy): no profiles this run", flush=True)
        profiler = Profiler(system, run_dir, cpu_only=os.environ.get("BENCH_PROFILE") == "cpu") if profile else None
        windows: list[tuple[datetime, datetime]] = []
        for number in range(1, rounds + 1):
            apps = ("project", "reference") if number % 2 else ("reference", "project")
            for path in measured:
                for app in apps:
                    base, urls = paths[(path, app)]
                    method, token, payload = (
                        ("POST", token_force, body) if path == "file" else ("GET", token_leader, None)
                    )
                    if profiler and app == "project":
                        profiler.start(f"{path}-round{number}", seconds)
                    meter = CpuMeter(system, reference)
                    meter.start()
                    window_started = time.monotonic()
                    started = datetime.now(UTC)
                    rate, p50, p99, errors, total = run_wrk(base, urls, method, token, payload, seconds, run_dir)
                    ended = datetime.now(UTC)
                    drain = None
                    if path == "file" and app == "project":
                        # The filings' whole chain (relay, the subscribers' handling) counts in
                        # their CPU, and the next round starts on a quiet system: wait for the
                        # metrics service to have applied them all.
                        drain = Drain(backlog(system))
                        if wait_until(lambda: backlog(system) == 0, timeout=DRAIN_TIMEOUT, every=0.25):
                            drain.seconds = (datetime.now(UTC) - ended).total_seconds()
                    cpu = meter.stop()
                    cpu_window = time.monotonic() - window_started
                    if profiler:
                        profiler.wait()
                    if path == "file" and app == "project":
                        windows.append((started, ended))
                    results.rounds.append(
                        Round(path, app, number, rate, p50, p99, errors, total, started, ended, cpu, drain, cpu_window)
                    )
                    print(
                        f"round {number}  {path:4}  {app:9}  {rate:8.1f}/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
                        f"  {errors} errors of {total}",
                        flush=True,
                    )
        lags = filing_lags(system, windows)
        report(results, lags)
        if profiler:
            print(f"py-spy profiles (collapsed stacks, for flamegraph.pl or speedscope): {run_dir}/*.txt")
        bad = [r for r in results.rounds if r.requests and r.errors > 0.01 * r.requests]
        if bad:
            print(f"FAILED: {len(bad)} rounds had more than 1% errors (logs in {run_dir})", file=sys.stderr)
            return 1
        return 0
    finally:
        if reference:
            reference.stop()
        system.stop()


def report(results: Results, lags: list[float]) -> None:
    names = {
        "file": "file an outcome (POST /api/v1/returns/{id}/outcomes)",
        "read": "read a package's metrics (GET /api/v1/metrics/packages/{id})",
    }
    print()
    print("| path | this project | reference | ratio |")
    print("|---|---|---|---|")
    for path in ("file", "read"):
        ours, theirs = results.of(path, "project"), results.of(path, "reference")
        if not ours or not theirs:
            continue

        def span(rounds: list[Round]) -> str:
            rates = [r.requests_per_second for r in rounds]
            p99s = [r.p99_ms for r in rounds]
            return f"{min(rates):,.0f}-{max(rates):,.0f}/s, p99 {min(p99s):.0f}-{max(p99s):.0f} ms"

        ratio = statistics.median(r.requests_per_second for r in ours) / max(
            statistics.median(r.requests_per_second for r in theirs), 1e-9
        )
        print(f"| {names[path]} | {span(ours)} | {span(theirs)} | {ratio:.2f} |")
    print()
    for path in ("file", "read"):
        paired = zip(results.of(path, "project"), results.of(path, "reference"), strict=False)
        ratios = [ours.requests_per_second / max(theirs.requests_per_second, 1e-9) for ours, theirs in paired]
        if ratios:
            # The machine's own speed moves between rounds: a round's two sides ran back to back.
            print(
                f"{path} ratio by round (each round's two sides back to back): " + ", ".join(f"{r:.2f}" for r in ratios)
            )
    filing = results.of("file", "project")
    if filing:
        print()
        print(
            "filing by round (each round files again on the same returns): "
            + ", ".join(f"{r.requests_per_second:.0f}/s" for r in filing)
        )
    if filing:
        print()
        print(
            f"event lag (outcome filed -> applied by metrics) over {len(lags)} filings during the load: "
            f"p50 {percentile(lags, 0.5):.2f} s, p95 {percentile(lags, 0.95):.2f} s, "
            f"max {max(lags, default=float('nan')):.2f} s"
        )
    for r in filing:
        if r.drain is None:
            continue
        if r.drain.seconds is None:
            print(f"round {r.number}: backlog NOT drained within {DRAIN_TIMEOUT} s: {r.drain.left} events at the end")
        else:
            print(
                f"round {r.number}: {r.drain.left} events left at the end of the load, "
                f"drained {r.drain.seconds:.1f} s later"
            )
    report_cpu(results)


def report_cpu(results: Results) -> None:
    """CPU per request by process group (median over rounds): where the machine's two cores go.
    A filing's includes its whole chain, measured until the metrics service had applied it."""
    print()
    print("CPU per request, ms (median over rounds; a filing's until its events were applied):")
    for path in ("file", "read"):
        for app in ("project", "reference"):
            rounds = [r for r in results.of(path, app) if r.requests]
            if not rounds:
                continue
            groups = sorted({name for r in rounds for name in r.cpu_seconds})
            per_request = {
                name: statistics.median(1000 * r.cpu_seconds.get(name, 0.0) / r.requests for r in rounds)
                for name in groups
            }
            total = statistics.median(1000 * sum(r.cpu_seconds.values()) / r.requests for r in rounds)
            cores = statistics.median(sum(r.cpu_seconds.values()) / r.cpu_window for r in rounds)
            parts = ", ".join(f"{name} {value:.2f}" for name, value in per_request.items() if value >= 0.01)
            print(f"  {path:4} {app:9} total {total:5.2f} ({cores:.2f} cores busy): {parts}")


if __name__ == "__main__":
    sys.exit(main())
