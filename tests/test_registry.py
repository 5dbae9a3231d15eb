"""The explicit service registry: ``services.SERVICES`` declares each service; ``shared`` is
handed it and names no service; a cron process whose schedules cannot be read fails loudly."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from services import SERVICES
from shared.cron import build_scheduler
from shared.settings import ROOT


def test_the_registry_declares_each_service_once_with_what_its_processes_need():
    assert [service.name for service in SERVICES] == ["dissemination", "outcomes", "metrics"]
    for service in SERVICES:
        assert (service.migrations / "env.py").exists()
        assert service.metadata.tables
        assert service.jobs is not None
    assert [service.port for service in SERVICES] == [5001, 5002, 5003]


def test_the_cron_process_registers_every_declared_schedule():
    scheduler = build_scheduler(SERVICES)
    functions = sorted(f"{job.func.__module__}.{job.func.__name__}" for job in scheduler.get_jobs())
    assert functions == sorted(
        [
            "services.dissemination.jobs.sweep_notifications",
            "services.outcomes.jobs.sweep_chases",
            "shared.outbox.sweep_outbox",
            "shared.outbox.sweep_outbox",
        ]
    )
    assert {job.queue_name for job in scheduler.get_jobs()} == {"dissemination", "outcomes"}


def test_schedules_that_cannot_be_read_stop_the_cron_process_instead_of_scheduling_nothing():
    def broken(settings):
        raise ModuleNotFoundError("No module named 'services.outcomes.chasing_typo'")

    with pytest.raises(ModuleNotFoundError):
        build_scheduler([SERVICES[0], replace(SERVICES[1], schedules=broken)])


def test_a_broken_import_in_a_cron_module_fails_the_cron_process_loudly():
    """What shared/cron.py once swallowed: the outcomes service's cron module does not import."""
    program = (
        "import runpy, sys; sys.modules['services.outcomes.cron'] = None; "
        "sys.argv = ['services', 'cron']; runpy.run_module('services', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr and "services.outcomes.cron" in result.stderr


def test_shared_imports_no_service():
    for path in (ROOT / "shared").glob("*.py"):
        text = path.read_text()
        assert "services." not in text and "import_module" not in text, path.name
