"""docker-compose.yml stays a valid production shape (there is no Docker engine here, but the
compose client parses and resolves the file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from shared.settings import ROOT

SECRETS = ("JWT_SECRET", "EVENT_SECRET", "FORM_SECRET", "SESSION_SECRET", "WEBHOOK_SECRETS_KEY", "METRICS_SCRAPE_TOKEN")


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_parses_with_every_process_of_the_product():
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine (.ci/run installs one)")
    env = {**os.environ, "POSTGRES_PASSWORD": "example", **{name: f"example-{name}" for name in SECRETS}}
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"]
        if command == ["docker", "compose"]
        else [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    services = json.loads(text)["services"] if text.lstrip().startswith("{") else text
    for name in ("postgres", "redis", "dissemination", "outcomes", "metrics", "worker", "cron", "migrate"):
        assert name in services


def test_compose_refuses_to_start_without_secrets():
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    base = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", *SECRETS)}
    base["POSTGRES_PASSWORD"] = "example"
    # Each secret on its own is required: leaving out any one of them stops compose, naming it.
    for missing in SECRETS:
        env = {**base, **{name: f"example-{name}" for name in SECRETS if name != missing}}
        result = subprocess.run(
            [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert result.returncode != 0, missing
        assert missing in result.stderr
