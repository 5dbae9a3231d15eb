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
EMAIL_VARIABLES = (
    "EMAIL_BACKEND",
    "SMTP_URL",
    "SMTP_CA_FILE",
    "EMAIL_TIMEOUT_SECONDS",
    "NOTIFY_API_KEY",
    "NOTIFY_EMAIL_TEMPLATE_ID",
)


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
            *EMAIL_VARIABLES,
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


# --- e-mail: a backend chosen without what it needs is refused, naming the variable ----------

NOTIFY_KEY = "nclcc_live-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0"
NOTIFY_TEMPLATE = "f33517ff-2a88-4f6e-b855-c550268ce08a"


def test_email_goes_to_the_sink_unless_smtp_url_or_email_backend_says_otherwise(environment):
    environment(production_env())
    assert settings_for("outcomes").email_backend == "sink"
    environment(production_env(SMTP_URL="smtp://mail.example:25"))
    settings = settings_for("outcomes")
    assert settings.email_backend == "smtp" and settings.smtp is not None and settings.smtp.port == 25


def test_production_with_notify_and_its_key_and_template_starts_and_hides_the_key(environment):
    environment(
        production_env(EMAIL_BACKEND="notify", NOTIFY_API_KEY=NOTIFY_KEY, NOTIFY_EMAIL_TEMPLATE_ID=NOTIFY_TEMPLATE)
    )
    settings = settings_for("dissemination")
    assert settings.email_backend == "notify" and settings.notify_email_template_id == NOTIFY_TEMPLATE
    assert NOTIFY_KEY not in repr(settings) and NOTIFY_KEY[-36:] not in repr(settings)


@pytest.mark.parametrize("missing", ["NOTIFY_API_KEY", "NOTIFY_EMAIL_TEMPLATE_ID"])
def test_production_with_notify_needs_its_key_and_template(environment, missing):
    env = {"EMAIL_BACKEND": "notify", "NOTIFY_API_KEY": NOTIFY_KEY, "NOTIFY_EMAIL_TEMPLATE_ID": NOTIFY_TEMPLATE}
    env.pop(missing)
    environment(production_env(**env))
    with pytest.raises(ConfigurationError, match=f"{missing} must be set when EMAIL_BACKEND=notify"):
        settings_for("dissemination")


def test_a_malformed_notify_key_or_template_is_refused_without_repeating_the_key(environment):
    almost = NOTIFY_KEY[:-1]
    environment(production_env(EMAIL_BACKEND="notify", NOTIFY_API_KEY=almost, NOTIFY_EMAIL_TEMPLATE_ID=NOTIFY_TEMPLATE))
    with pytest.raises(ConfigurationError, match="NOTIFY_API_KEY is not a GOV.UK Notify API key") as raised:
        settings_for("dissemination")
    assert almost[-20:] not in str(raised.value)
    environment(production_env(EMAIL_BACKEND="notify", NOTIFY_API_KEY=NOTIFY_KEY, NOTIFY_EMAIL_TEMPLATE_ID="welcome"))
    with pytest.raises(ConfigurationError, match="NOTIFY_EMAIL_TEMPLATE_ID must be a Notify template's id"):
        settings_for("dissemination")


def test_an_unknown_backend_or_smtp_without_its_url_is_refused(environment):
    environment(production_env(EMAIL_BACKEND="pigeon"))
    with pytest.raises(ConfigurationError, match="EMAIL_BACKEND must be one of sink, smtp, notify"):
        settings_for("outcomes")
    environment(production_env(EMAIL_BACKEND="smtp"))
    with pytest.raises(ConfigurationError, match="SMTP_URL must be set when EMAIL_BACKEND=smtp"):
        settings_for("outcomes")


def test_production_refuses_an_smtp_password_sent_in_clear(environment):
    environment(production_env(SMTP_URL="smtp://mailer:hunter2-secret@mail.example:587"))
    with pytest.raises(ConfigurationError, match="SMTP_URL would send its password in clear") as raised:
        settings_for("outcomes")
    assert "hunter2-secret" not in str(raised.value)
    for url in (
        "smtp://mailer:hunter2-secret@mail.example:587?starttls=1",
        "smtps://mailer:hunter2-secret@mail.example",
    ):
        environment(production_env(SMTP_URL=url))
        assert settings_for("outcomes").smtp.encrypted
    environment({"APP_ENV": "development", "SMTP_URL": "smtp://mailer:hunter2-secret@127.0.0.1:2525"})
    assert settings_for("outcomes").smtp.password == "hunter2-secret"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("smtp+starttls://mailer:hunter2-secret@mail.example", "SMTP_URL must start smtp:// or smtps://"),
        ("smtp://mailer:hunter2-secret@mail.example?tls=yes", "SMTP_URL has unknown options tls"),
        ("smtp://mailer:hunter2-secret@mail.example?starttls=maybe", "SMTP_URL's starttls must be 1 or 0"),
        ("smtps://mailer:hunter2-secret@mail.example?starttls=1", "smtps:// is TLS already"),
        ("smtp://mailer:hunter2-secret@mail.example:smtp", "SMTP_URL has a port that is not a number"),
    ],
)
def test_a_malformed_smtp_url_is_refused_without_repeating_its_password(environment, url, problem):
    environment(production_env(SMTP_URL=url))
    with pytest.raises(ConfigurationError, match=re.escape(problem)) as raised:
        settings_for("outcomes")
    assert "hunter2-secret" not in str(raised.value)


def test_smtp_ca_file_must_exist(environment, tmp_path):
    environment(production_env(SMTP_URL="smtp://mail.example?starttls=1", SMTP_CA_FILE=str(tmp_path / "none.pem")))
    with pytest.raises(ConfigurationError, match="SMTP_CA_FILE must name a file"):
        settings_for("outcomes")
