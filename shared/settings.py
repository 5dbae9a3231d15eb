"""Every setting, read from the environment in one place.

Defaults give a working development set-up: SQLite files under ``var/`` and an embedded
Redis (started by ``make run`` / the tests, which then export ``REDIS_URL``).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, overload
from urllib.parse import parse_qs, unquote, urlsplit

from shared.vocabulary import CLASSIFICATIONS

ROOT = Path(__file__).resolve().parent.parent

APP_ENVS = ("development", "test", "production")
# Development and test sign with these well-known values; production refuses every one of them.
DEV_SECRETS = {
    "JWT_SECRET": "dev-only-jwt-secret-never-use-in-production",
    "EVENT_SECRET": "dev-only-event-secret-never-use-in-production",
    "FORM_SECRET": "dev-only-form-secret-never-use-in-production",
    "SESSION_SECRET": "dev-only-session-secret-never-use-in-production",
    # Encrypts each organisation's webhook signing secret at rest and between the services that
    # sign webhooks (the others have no need of it).
    "WEBHOOK_SECRETS_KEY": "dev-only-webhook-secrets-key-never-use-in-production",
    # What Prometheus sends (Authorization: Bearer) to read /metrics and the worker's and cron's.
    "METRICS_SCRAPE_TOKEN": "dev-only-metrics-scrape-token-never-use-in-production",
}
MIN_SECRET_BYTES = 32
SUPPORTED_JWT_ALGORITHMS = frozenset({"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})


# Without RELAY_RETRY_INTERVALS / NOTIFY_RETRY_INTERVALS: seconds between the tries of an event's
# relay, of a recipient's notification and of a chase step.
RELAY_RETRY_INTERVALS = (5, 15, 60, 300, 900, 1800, 3600, 3600, 3600)
NOTIFY_RETRY_INTERVALS = (10, 30, 120, 600, 1800)
CHASE_RETRY_INTERVALS = (30, 120, 600, 1800)
# Without WORKER_METRICS_PORT / CRON_METRICS_PORT: where the worker and the cron process serve
# their metrics (on PROCESS_METRICS_ADDRESS, loopback unless told otherwise).
WORKER_METRICS_PORT = 9101
CRON_METRICS_PORT = 9102


EMAIL_BACKENDS = ("sink", "smtp", "notify")
# A GOV.UK Notify API key is "<key name>-<service id>-<secret id>", the two ids UUIDs.
_UUID = r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
NOTIFY_API_KEY_FORMAT = re.compile(rf".+-{_UUID}-{_UUID}", re.I)


class Declared(Protocol):
    """What the settings read of a service's declaration (``shared.service.Service``)."""

    # Read-only, as the frozen declarations are.
    @property
    def name(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def subscribers(self) -> tuple[str, ...]: ...
    @property
    def signs_webhooks(self) -> bool: ...


class ConfigurationError(RuntimeError):
    """A setting is missing or unsafe: the service refuses to start and says which variable."""


@overload
def _env(name: str, default: str) -> str: ...
@overload
def _env(name: str, default: None = None) -> str | None: ...


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    value = _env(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None


def _bool(name: str, default: bool = False) -> bool:
    value = (_env(name) or "").lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {value!r}")


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _intervals(name: str) -> tuple[int, ...] | None:
    """Seconds between retries, ``5,15,60``; None when the variable is not set."""
    value = _env(name)
    if value is None:
        return None
    try:
        return tuple(int(part) for part in _list(value))
    except ValueError:
        raise ConfigurationError(f"{name} must be whole numbers of seconds separated by commas") from None


@dataclass(frozen=True)
class SmtpServer:
    """Where ``SMTP_URL`` sends e-mail: ``smtp://[user:password@]host[:port][?starttls=1]``, or
    ``smtps://...`` for TLS from the first byte. With ``starttls=1`` nothing (no password, no
    message) is sent unless the server takes STARTTLS and shows a certificate that checks."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.implicit_tls or self.starttls


def smtp_server(url: str | None) -> SmtpServer | None:
    """``SMTP_URL`` read; its errors never repeat the URL, which may hold a password."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigurationError("SMTP_URL must start smtp:// or smtps://")
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(options) - {"starttls"}
    if unknown:
        raise ConfigurationError(f"SMTP_URL has unknown options {', '.join(sorted(unknown))}; only starttls=1")
    flag = (options.get("starttls") or ["0"])[-1].lower()
    if flag not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigurationError("SMTP_URL's starttls must be 1 or 0")
    starttls = flag in ("1", "true", "yes")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError("SMTP_URL has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ConfigurationError("SMTP_URL names no host")
    implicit_tls = parts.scheme == "smtps"
    if implicit_tls and starttls:
        raise ConfigurationError("SMTP_URL: smtps:// is TLS already; starttls=1 is for smtp://")
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 587 if starttls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def database_url_for(service: str) -> str:
    """The service's own database URL.

    ``<SERVICE>_DATABASE_URL`` wins; else ``DATABASE_URL`` (on PostgreSQL the services keep
    apart by schema, on SQLite by file); else a SQLite file under ``var/``.
    """
    own = _env(f"{service.upper()}_DATABASE_URL")
    if own:
        return own
    shared = _env("DATABASE_URL")
    if shared and shared.startswith("sqlite"):
        # One SQLite file cannot hold three schemas: give each service a sibling file.
        base, _, suffix = shared.rpartition(".db")
        return f"{base}-{service}.db{suffix}" if base else f"{shared}-{service}"
    if shared:
        return shared
    var = Path(_env("VAR_DIR", str(ROOT / "var")))
    return f"sqlite:///{var / (service + '.db')}"


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    database_schema: str | None
    redis_url: str
    app_env: str
    jwt_secret: str | None
    jwt_public_key: str | None
    jwt_jwks_url: str | None
    jwt_algorithms: list[str]
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_max_lifetime: int
    event_secret: str
    form_secret: str
    session_secret: str
    webhook_secrets_key: str | None
    centre_org: str
    webhook_allow_private: bool
    max_classification: str
    # Which sender e-mail goes by: "sink" (files under MAIL_SINK_DIR), "smtp" or "notify".
    email_backend: str
    smtp: SmtpServer | None
    smtp_ca_file: str | None
    email_timeout_seconds: int
    notify_api_key: str | None = field(repr=False)
    notify_email_template_id: str | None
    mail_from: str
    mail_sink_dir: Path
    centre_email: str
    service_urls: dict[str, str]
    subscribers: list[str]
    outbox_sweep_seconds: int
    chase_sweep_seconds: int
    notify_sweep_seconds: int
    default_outcome_days: int
    min_due_seconds: int
    # A package passed on by a recipient (docs/onward.md): the onward return's due date, and how
    # many pass-ons deep a chain may go.
    onward_outcome_days: int = 28
    onward_max_depth: int = 3
    relay_retry_intervals: tuple[int, ...] = RELAY_RETRY_INTERVALS
    notify_retry_intervals: tuple[int, ...] = NOTIFY_RETRY_INTERVALS
    chase_retry_intervals: tuple[int, ...] = CHASE_RETRY_INTERVALS
    signs_webhooks: bool = False
    public_urls: dict[str, str] = field(default_factory=dict)
    testing: bool = False
    metrics_scrape_token: str | None = None
    # 0 turns the endpoint off (shared.monitoring).
    worker_metrics_port: int = WORKER_METRICS_PORT
    cron_metrics_port: int = CRON_METRICS_PORT
    process_metrics_address: str = "127.0.0.1"
    # People sign in to the web pages with the organisation's identity provider (OpenID Connect,
    # shared.oidc) when OIDC_ISSUER is set.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def on_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings(service: str, services: Sequence[Declared], overrides: dict | None = None) -> Settings:
    """The settings of ``service``, one of ``services`` (every service there is: each one's
    URL is known to the others)."""
    declared = {each.name: each for each in services}
    if service not in declared:
        raise ValueError(f"unknown service {service!r}")
    own = declared[service]
    service_urls = {
        name: _env(f"{name.upper()}_URL", f"http://127.0.0.1:{_int(f'{name.upper()}_PORT', each.port)}").rstrip("/")
        for name, each in declared.items()
    }
    # One variable for both kinds of notification; each kind keeps its own default.
    notify_retries = _intervals("NOTIFY_RETRY_INTERVALS")
    database_url = database_url_for(service)
    app_env = (_env("APP_ENV", "production") or "").lower()
    if app_env not in APP_ENVS:
        raise ConfigurationError(f"APP_ENV must be one of {', '.join(APP_ENVS)}, not {app_env!r}")

    def secret(name: str) -> str | None:
        # Outside production a missing secret takes its development value; production has none.
        return _env(name, None if app_env == "production" else DEV_SECRETS[name])

    values: dict[str, Any] = dict(
        service=service,
        database_url=database_url,
        database_schema=_env(f"{service.upper()}_DATABASE_SCHEMA", service)
        if database_url.startswith("postgresql")
        else None,
        redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        app_env=app_env,
        jwt_secret=secret("JWT_SECRET"),
        jwt_public_key=_env("JWT_PUBLIC_KEY"),
        jwt_jwks_url=_env("JWT_JWKS_URL"),
        # An identity provider's keys sign RS256 or ES256; our own development tokens HS256.
        jwt_algorithms=_list(
            _env("JWT_ALGORITHMS", "RS256,ES256" if _env("JWT_JWKS_URL") or _env("JWT_PUBLIC_KEY") else "HS256")
        ),
        jwt_issuer=_env("JWT_ISSUER"),
        jwt_audience=_env("JWT_AUDIENCE"),
        # Tokens living longer than this are refused, whatever their exp says.
        jwt_max_lifetime=_int("JWT_MAX_LIFETIME", 12 * 3600),
        event_secret=secret("EVENT_SECRET"),
        form_secret=secret("FORM_SECRET"),
        session_secret=secret("SESSION_SECRET"),
        webhook_secrets_key=secret("WEBHOOK_SECRETS_KEY"),
        centre_org=(_env("CENTRE_ORG", "NCLCC") or "").upper(),
        # Only for local work: lets webhooks go to http:// and loopback or private addresses.
        webhook_allow_private=_bool("WEBHOOK_ALLOW_PRIVATE"),
        max_classification=_env("MAX_CLASSIFICATION", "OFFICIAL-SENSITIVE"),
        # Without EMAIL_BACKEND: SMTP when SMTP_URL is set, else the development sink.
        email_backend=(_env("EMAIL_BACKEND") or ("smtp" if _env("SMTP_URL") else "sink")).lower(),
        smtp=smtp_server(_env("SMTP_URL")),
        smtp_ca_file=_env("SMTP_CA_FILE"),
        # Bounds each wait on the mail server or on Notify (connect, each reply), not a whole send.
        email_timeout_seconds=_int("EMAIL_TIMEOUT_SECONDS", 10),
        notify_api_key=_env("NOTIFY_API_KEY"),
        notify_email_template_id=_env("NOTIFY_EMAIL_TEMPLATE_ID"),
        mail_from=_env("MAIL_FROM", "nclcc-outcomes@localhost"),
        mail_sink_dir=Path(_env("MAIL_SINK_DIR", str(Path(_env("VAR_DIR", str(ROOT / "var"))) / "mail"))),
        centre_email=_env("CENTRE_EMAIL", "returns@nclcc.invalid"),
        service_urls=service_urls,
        public_urls={name: _env(f"{name.upper()}_PUBLIC_URL", url) for name, url in service_urls.items()},
        subscribers=_list(_env(f"{service.upper()}_SUBSCRIBERS", ",".join(own.subscribers))),
        outbox_sweep_seconds=_int("OUTBOX_SWEEP_SECONDS", 30),
        chase_sweep_seconds=_int("CHASE_SWEEP_SECONDS", 60),
        # How often, and after how long, a package's notice whose job was lost is sent again.
        notify_sweep_seconds=_int("NOTIFY_SWEEP_SECONDS", 60),
        default_outcome_days=_int("DEFAULT_OUTCOME_DAYS", 28),
        onward_outcome_days=_int("ONWARD_OUTCOME_DAYS", 28),
        onward_max_depth=_int("ONWARD_MAX_DEPTH", 3),
        # Demos and end-to-end tests run the chase ladder in seconds; production keeps an hour.
        min_due_seconds=_int("MIN_DUE_SECONDS", 3600),
        relay_retry_intervals=_intervals("RELAY_RETRY_INTERVALS") or RELAY_RETRY_INTERVALS,
        notify_retry_intervals=notify_retries or NOTIFY_RETRY_INTERVALS,
        chase_retry_intervals=notify_retries or CHASE_RETRY_INTERVALS,
        signs_webhooks=own.signs_webhooks,
        metrics_scrape_token=secret("METRICS_SCRAPE_TOKEN"),
        worker_metrics_port=_int("WORKER_METRICS_PORT", WORKER_METRICS_PORT),
        cron_metrics_port=_int("CRON_METRICS_PORT", CRON_METRICS_PORT),
        process_metrics_address=_env("PROCESS_METRICS_ADDRESS", "127.0.0.1"),
        oidc_issuer=(_env("OIDC_ISSUER") or "").rstrip("/") or None,
        oidc_client_id=_env("OIDC_CLIENT_ID"),
        oidc_client_secret=_env("OIDC_CLIENT_SECRET"),
    )
    values.update(overrides or {})
    if values["max_classification"] not in CLASSIFICATIONS:
        raise ConfigurationError(f"MAX_CLASSIFICATION must be one of {', '.join(CLASSIFICATIONS)}")
    unknown = set(values["jwt_algorithms"]) - SUPPORTED_JWT_ALGORITHMS
    if unknown or not values["jwt_algorithms"]:
        raise ConfigurationError(f"JWT_ALGORITHMS must name some of {', '.join(sorted(SUPPORTED_JWT_ALGORITHMS))}")
    if values["onward_outcome_days"] < 1 or values["onward_max_depth"] < 0:
        raise ConfigurationError("ONWARD_OUTCOME_DAYS must be 1 or more and ONWARD_MAX_DEPTH 0 or more")
    settings = Settings(**values)
    check_secrets(settings)
    check_oidc(settings)
    check_email(settings)
    return settings


def check_email(settings: Settings) -> None:
    """Refuse an e-mail backend that could not send (in any environment: choosing one without
    what it needs is a mistake everywhere), and, in production, a password sent in clear."""
    backend = settings.email_backend
    if backend not in EMAIL_BACKENDS:
        raise ConfigurationError(f"EMAIL_BACKEND must be one of {', '.join(EMAIL_BACKENDS)}, not {backend!r}")
    if settings.email_timeout_seconds <= 0:
        raise ConfigurationError("EMAIL_TIMEOUT_SECONDS must be more than 0")
    if backend == "smtp":
        if settings.smtp is None:
            raise ConfigurationError("SMTP_URL must be set when EMAIL_BACKEND=smtp; see docs/email.md")
        if settings.production and settings.smtp.password is not None and not settings.smtp.encrypted:
            raise ConfigurationError(
                "SMTP_URL would send its password in clear: use smtps:// or ?starttls=1; see docs/email.md"
            )
    if settings.smtp_ca_file and not Path(settings.smtp_ca_file).is_file():
        raise ConfigurationError("SMTP_CA_FILE must name a file of PEM certificates")
    if backend == "notify":
        key, template_id = settings.notify_api_key, settings.notify_email_template_id
        if not key:
            raise ConfigurationError("NOTIFY_API_KEY must be set when EMAIL_BACKEND=notify; see docs/email.md")
        if not NOTIFY_API_KEY_FORMAT.fullmatch(key):
            # The value itself is never repeated: it is a secret.
            raise ConfigurationError("NOTIFY_API_KEY is not a GOV.UK Notify API key (name-serviceid-secretid)")
        if not template_id:
            raise ConfigurationError(
                "NOTIFY_EMAIL_TEMPLATE_ID must be set when EMAIL_BACKEND=notify; see docs/email.md"
            )
        try:
            uuid.UUID(template_id)
        except ValueError:
            raise ConfigurationError("NOTIFY_EMAIL_TEMPLATE_ID must be a Notify template's id (a UUID)") from None


def check_oidc(settings: Settings) -> None:
    """Sign-in with an identity provider needs all three settings; in production its issuer is
    https and its client secret a strong one of its own (see docs/sign-in.md)."""
    named = {
        "OIDC_ISSUER": settings.oidc_issuer,
        "OIDC_CLIENT_ID": settings.oidc_client_id,
        "OIDC_CLIENT_SECRET": settings.oidc_client_secret,
    }
    if not any(named.values()):
        return
    missing = [name for name, value in named.items() if not value]
    if missing:
        raise ConfigurationError(f"{', '.join(missing)} must be set with the other OIDC_ settings; see docs/sign-in.md")
    if not settings.production:
        return
    assert settings.oidc_issuer and settings.oidc_client_secret
    if not settings.oidc_issuer.lower().startswith("https://"):
        raise ConfigurationError("OIDC_ISSUER must be an https:// address in production")
    if len(settings.oidc_client_secret.encode()) < 16:
        raise ConfigurationError("OIDC_CLIENT_SECRET is too short to be an identity provider's client secret")
    others = {settings.jwt_secret, settings.event_secret, settings.form_secret, settings.session_secret}
    if settings.oidc_client_secret in others:
        raise ConfigurationError("OIDC_CLIENT_SECRET must differ from the other secrets: each secret guards one thing")


def check_secrets(settings: Settings) -> None:
    """Refuse to run with missing, short, shared or development secrets in production.

    Each secret guards one thing (tokens, events between services, form links, session
    cookies, organisations' webhook secrets, metrics scrapes), so a party that must hold one of them never holds
    the power of another. Only the services that sign webhooks need ``WEBHOOK_SECRETS_KEY``;
    the others run without it.
    """
    verifies_by_key = bool(settings.jwt_jwks_url or settings.jwt_public_key)
    secrets = {
        "JWT_SECRET": settings.jwt_secret,
        "EVENT_SECRET": settings.event_secret,
        "FORM_SECRET": settings.form_secret,
        "SESSION_SECRET": settings.session_secret,
        "METRICS_SCRAPE_TOKEN": settings.metrics_scrape_token,
    }
    if settings.signs_webhooks:
        secrets["WEBHOOK_SECRETS_KEY"] = settings.webhook_secrets_key
    if not settings.production:
        missing = [
            name for name, value in secrets.items() if not value and not (name == "JWT_SECRET" and verifies_by_key)
        ]
        if missing:
            raise ConfigurationError(f"{', '.join(missing)} must be set")
        return
    if verifies_by_key and settings.jwt_secret is None:
        secrets.pop("JWT_SECRET")
    development_values = set(DEV_SECRETS.values())
    seen: dict[str, str] = {}
    for name, value in secrets.items():
        if not value:
            hint = " (or JWT_JWKS_URL / JWT_PUBLIC_KEY)" if name == "JWT_SECRET" else ""
            raise ConfigurationError(f"{name} must be set in production{hint}; see README, Security")
        if value in development_values:
            raise ConfigurationError(f"{name} is a development value; set a random one of 32 bytes or more")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long")
        if value in seen:
            raise ConfigurationError(f"{name} must differ from {seen[value]}: each secret guards one thing")
        seen[value] = name
    # Production tokens must say who issued them and for whom, so a token for another system
    # signed by the same provider is refused.
    for name in ("JWT_ISSUER", "JWT_AUDIENCE"):
        if not getattr(settings, name.lower()):
            raise ConfigurationError(f"{name} must be set in production; see README, Security")
