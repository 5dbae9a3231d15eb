"""One system for every drill of the run (starting it takes a while): started once, stopped
with Ctrl-C at the end as a user would. Each drill tags its own packages, so its counts are
its own, and waits until they have settled before the next fault."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drills.load import Ledger
from drills.report import Report
from drills.system import System
from shared.settings import ROOT


def run_directory() -> Path:
    import os

    if os.environ.get("RUN_DIR"):
        return Path(os.environ["RUN_DIR"])
    runs = ROOT / "var" / "drills"
    # Only the latest run is kept (its logs, mail and figures), for reading after a failure.
    shutil.rmtree(runs, ignore_errors=True)
    return runs / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


@pytest.fixture(scope="session")
def report(pytestconfig) -> Report:
    return pytestconfig._drill_report


@pytest.fixture(scope="session")
def system(report) -> Iterator[System]:
    run_dir = run_directory()
    report.path = run_dir / "figures.md"
    system = System(run_dir)
    where = f"PostgreSQL database {system.store.database}" if system.database_url else "SQLite files"
    print(f"\ndrills: run directory {run_dir}, {where}, redis-server on {system.redis.url}")
    try:
        system.start()
        print(f"drills: system ready under {system.control.kind} (make run's log: {system.log_path})")
        yield system
    finally:
        code = system.stop()
        print(f"\ndrills: make run stopped with exit code {code}")


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return Ledger()


def pytest_configure(config):
    config._drill_report = Report()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report: Report = config._drill_report
    if report.sections:
        terminalreporter.section("drill figures")
        terminalreporter.write_line(report.render())
        if report.path:
            terminalreporter.write_line(f"\n(also in {report.path})")
