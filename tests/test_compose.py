"""docker-compose.yml stays a valid production shape: there is no Docker engine here, but the
compose client parses and resolves the file, and these tests read what it resolved."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from shared.settings import ROOT

SECRETS = ("JWT_SECRET", "EVENT_SECRET", "FORM_SECRET", "SESSION_SECRET", "WEBHOOK_SECRETS_KEY", "METRICS_SCRAPE_TOKEN")
WEB = {"dissemination": 5001, "outcomes": 5002, "metrics": 5003}
APP = (*WEB, "worker", "cron", "migrate")


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def resolve(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine (.ci/run installs one)")
    return subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    env = {**os.environ, "POSTGRES_PASSWORD": "example", **{name: f"example-{name}" for name in SECRETS}}
    result = resolve(env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_file_has_every_process_of_the_product(services):
    assert set(services) == {"postgres", "redis", *APP}
    images = {services[name]["image"] for name in APP}
    assert len(images) == 1  # one image for every app process


def test_a_one_shot_migration_runs_first_and_the_others_wait_for_it(services):
    migrate = services["migrate"]
    assert "python -m services migrate" in " ".join(migrate["command"])
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (*WEB, "worker", "cron"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_each_web_service_is_healthy_only_when_ready(services):
    for name, port in WEB.items():
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in check, name
        # Resolved to the long syntax ({published, target}) by newer clients, kept short by older.
        ports = [f"{p['published']}:{p['target']}" if isinstance(p, dict) else p for p in services[name]["ports"]]
        assert f"{port}:{port}" in ports, name


def test_app_processes_restart_on_failure(services):
    for name in (*WEB, "worker", "cron"):
        assert services[name]["restart"] == "on-failure", name


def test_workers_scale_and_cron_does_not(services):
    worker, cron = services["worker"], services["cron"]
    # `--scale worker=N` needs replicas that do not clash: no fixed name, no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] >= 1
    # Exactly one cron process: RQ's CronScheduler has no lock between instances.
    assert cron["deploy"]["replicas"] == 1
    assert "container_name" not in cron and "ports" not in cron


def test_compose_refuses_to_start_without_secrets():
    base = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", *SECRETS)}
    base["POSTGRES_PASSWORD"] = "example"
    # Each secret on its own is required: leaving out any one of them stops compose, naming it.
    for missing in SECRETS:
        env = {**base, **{name: f"example-{name}" for name in SECRETS if name != missing}}
        result = resolve(env)
        assert result.returncode != 0, missing
        assert missing in result.stderr
