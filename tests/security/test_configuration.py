"""Finding 1 and 2 of the penetration test: one secret signed everything, and the development
secret (or a one-character one) was accepted anywhere. In production each service now refuses
to start unless every secret is set, long enough, its own, and not a development value."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from services import settings_for
from shared.settings import DEV_SECRETS, ROOT, ConfigurationError

SECRETS = ("JWT_SECRET", "EVENT_SECRET", "FORM_SECRET", "SESSION_SECRET", "METRICS_SCRAPE_TOKEN")


def production_env(**changes: str | None) -> dict[str, str]:
    env = {name: f"{name.lower()}-" + "x" * 40 for name in (*SECRETS, "WEBHOOK_SECRETS_KEY")}
    env.update(APP_ENV="production", JWT_ISSUER="https://idp.example", JWT_AUDIENCE="nclcc-outcomes")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.fixture
def environment(monkeypatch):
    def set_env(env: dict[str, str]) -> None:
        for name in (
            *SECRETS,
            "WEBHOOK_SECRETS_KEY",
            "WEBHOOK_SECRET",
            "APP_ENV",
            "JWT_ISSUER",
            "JWT_AUDIENCE",
            "JWT_JWKS_URL",
            "JWT_PUBLIC_KEY",
            "SECRET_KEY",
            "JWT_ALGORITHMS",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize("service", ["dissemination", "outcomes", "metrics"])
def test_production_with_every_secret_its_own_starts(environment, service):
    environment(production_env())
    settings = settings_for(service)
    assert settings.production
    assert len({settings.jwt_secret, settings.event_secret, settings.form_secret, settings.session_secret}) == 4


@pytest.mark.parametrize("missing", SECRETS)
def test_production_refuses_a_missing_secret_by_name(environment, missing):
    environment(production_env(**{missing: None}))
    with pytest.raises(ConfigurationError, match=missing):
        settings_for("dissemination")


def test_the_old_single_secret_key_is_no_fallback(environment):
    environment(
        production_env(JWT_SECRET=None, EVENT_SECRET=None, FORM_SECRET=None, SESSION_SECRET=None, SECRET_KEY="s" * 64)
    )
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        settings_for("outcomes")


@pytest.mark.parametrize("name", SECRETS)
def test_production_refuses_a_short_secret(environment, name):
    environment(production_env(**{name: "x"}))
    with pytest.raises(ConfigurationError, match=f"{name} must be at least 32 bytes"):
        settings_for("metrics")


@pytest.mark.parametrize("name", SECRETS)
def test_production_refuses_any_development_value(environment, name):
    for value in DEV_SECRETS.values():
        environment(production_env(**{name: value}))
        with pytest.raises(ConfigurationError, match=f"{name} is a development value"):
            settings_for("dissemination")


def test_production_refuses_one_secret_used_twice(environment):
    environment(production_env(FORM_SECRET="same-" + "y" * 40, SESSION_SECRET="same-" + "y" * 40))
    with pytest.raises(ConfigurationError, match="SESSION_SECRET must differ from FORM_SECRET"):
        settings_for("outcomes")


@pytest.mark.parametrize("name", ["JWT_ISSUER", "JWT_AUDIENCE"])
def test_production_needs_issuer_and_audience(environment, name):
    environment(production_env(**{name: None}))
    with pytest.raises(ConfigurationError, match=name):
        settings_for("dissemination")


def test_an_identity_provider_replaces_the_jwt_secret(environment):
    environment(production_env(JWT_SECRET=None, JWT_JWKS_URL="https://idp.example/jwks"))
    settings = settings_for("dissemination")
    assert settings.jwt_secret is None
    assert settings.jwt_algorithms == ["RS256", "ES256"]


def test_app_env_defaults_to_production(environment):
    environment({})
    with pytest.raises(ConfigurationError, match="JWT_SECRET must be set in production"):
        settings_for("dissemination")


def test_unknown_app_env_and_algorithms_are_refused(environment):
    environment(production_env(APP_ENV="staging"))
    with pytest.raises(ConfigurationError, match="APP_ENV"):
        settings_for("dissemination")
    environment(production_env(JWT_ALGORITHMS="none"))
    with pytest.raises(ConfigurationError, match="JWT_ALGORITHMS"):
        settings_for("dissemination")


def test_development_uses_a_distinct_value_for_each_secret(environment):
    environment({"APP_ENV": "development"})
    settings = settings_for("dissemination")
    assert len({settings.jwt_secret, settings.event_secret, settings.form_secret, settings.session_secret}) == 4


@pytest.mark.parametrize("service", ["dissemination", "outcomes", "metrics"])
def test_a_service_process_refuses_to_start_naming_the_variable(service):
    """As gunicorn would load it: the app factory raises before serving anything."""
    env = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "APP_ENV", "SECRET_KEY")}
    env.update(production_env(EVENT_SECRET="short"))
    result = subprocess.run(
        [sys.executable, "-c", f"from services.{service} import create_app; create_app()"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode != 0
    assert "EVENT_SECRET must be at least 32 bytes" in result.stderr


@pytest.mark.parametrize("service", ["dissemination", "outcomes"])
def test_the_services_that_sign_webhooks_need_their_own_key_for_the_secrets(environment, service):
    environment(production_env(WEBHOOK_SECRETS_KEY=None))
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRETS_KEY must be set"):
        settings_for(service)
    environment(production_env(WEBHOOK_SECRETS_KEY="short"))
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRETS_KEY must be at least 32 bytes"):
        settings_for(service)
    environment(production_env(WEBHOOK_SECRETS_KEY=DEV_SECRETS["WEBHOOK_SECRETS_KEY"]))
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRETS_KEY is a development value"):
        settings_for(service)
    environment(production_env(WEBHOOK_SECRETS_KEY="event_secret-" + "x" * 40))
    with pytest.raises(ConfigurationError, match="must differ"):
        settings_for(service)


def test_the_metrics_service_runs_without_the_webhook_secrets_key(environment):
    environment(production_env(WEBHOOK_SECRETS_KEY=None))
    assert settings_for("metrics").webhook_secrets_key is None


def test_the_interim_single_webhook_secret_is_gone(environment):
    from shared.settings import Settings

    environment(production_env(WEBHOOK_SECRET="w" * 64))
    assert "WEBHOOK_SECRET" not in DEV_SECRETS
    assert not hasattr(settings_for("dissemination"), "webhook_secret")
    assert "webhook_secret" not in Settings.__dataclass_fields__
    pattern = re.compile(r"\bWEBHOOK_SECRET\b|settings\.webhook_secret\b")
    for path in [
        *ROOT.glob("shared/*.py"),
        *ROOT.glob("services/**/*.py"),
        *ROOT.glob("tools/*.py"),
        ROOT / "README.md",
        ROOT / "docs" / "architecture.md",
        ROOT / "docker-compose.yml",
    ]:
        assert not pattern.search(path.read_text()), path
