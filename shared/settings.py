"""Every setting, read from the environment in one place.

Defaults give a working development set-up: SQLite files under ``var/`` and an embedded
Redis (started by ``make run`` / the tests, which then export ``REDIS_URL``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("dissemination", "outcomes", "metrics")
DEFAULT_PORTS = {"dissemination": 5001, "outcomes": 5002, "metrics": 5003}
CLASSIFICATIONS = ("OFFICIAL", "OFFICIAL-SENSITIVE", "SECRET", "TOP SECRET")

# Which services receive the events each service emits. A service only appears once it
# exists; its events wait in the sender's outbox while it is down.
DEFAULT_SUBSCRIBERS = {
    "dissemination": "outcomes,metrics",
    "outcomes": "dissemination,metrics",
    "metrics": "",
}

DEV_SECRET = "dev-only-secret-change-me-in-production"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


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
    jwt_secret: str
    jwt_public_key: str | None
    jwt_jwks_url: str | None
    jwt_algorithms: list[str]
    jwt_issuer: str | None
    jwt_audience: str | None
    event_secret: str
    webhook_secret: str
    form_secret: str
    max_classification: str
    smtp_url: str | None
    mail_from: str
    mail_sink_dir: Path
    centre_email: str
    service_urls: dict[str, str]
    subscribers: list[str]
    outbox_sweep_seconds: int
    chase_sweep_seconds: int
    default_outcome_days: int
    min_due_seconds: int
    public_urls: dict[str, str] = field(default_factory=dict)
    testing: bool = False

    @property
    def on_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings(service: str, overrides: dict | None = None) -> Settings:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    ports = {name: _int(f"{name.upper()}_PORT", port) for name, port in DEFAULT_PORTS.items()}
    service_urls = {
        name: _env(f"{name.upper()}_URL", f"http://127.0.0.1:{ports[name]}").rstrip("/")
        for name in SERVICES
    }
    database_url = database_url_for(service)
    secret = _env("SECRET_KEY", DEV_SECRET)
    values = dict(
        service=service,
        database_url=database_url,
        database_schema=_env(f"{service.upper()}_DATABASE_SCHEMA", service)
        if database_url.startswith("postgresql")
        else None,
        redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        jwt_secret=_env("JWT_SECRET", secret),
        jwt_public_key=_env("JWT_PUBLIC_KEY"),
        jwt_jwks_url=_env("JWT_JWKS_URL"),
        jwt_algorithms=_list(_env("JWT_ALGORITHMS", "HS256")),
        jwt_issuer=_env("JWT_ISSUER"),
        jwt_audience=_env("JWT_AUDIENCE"),
        event_secret=_env("EVENT_SECRET", secret),
        webhook_secret=_env("WEBHOOK_SECRET", secret),
        form_secret=_env("FORM_SECRET", secret),
        max_classification=_env("MAX_CLASSIFICATION", "OFFICIAL-SENSITIVE"),
        smtp_url=_env("SMTP_URL"),
        mail_from=_env("MAIL_FROM", "nclcc-outcomes@localhost"),
        mail_sink_dir=Path(_env("MAIL_SINK_DIR", str(Path(_env("VAR_DIR", str(ROOT / "var"))) / "mail"))),
        centre_email=_env("CENTRE_EMAIL", "returns@nclcc.invalid"),
        service_urls=service_urls,
        public_urls={name: _env(f"{name.upper()}_PUBLIC_URL", url) for name, url in service_urls.items()},
        subscribers=_list(_env(f"{service.upper()}_SUBSCRIBERS", DEFAULT_SUBSCRIBERS[service])),
        outbox_sweep_seconds=_int("OUTBOX_SWEEP_SECONDS", 30),
        chase_sweep_seconds=_int("CHASE_SWEEP_SECONDS", 60),
        default_outcome_days=_int("DEFAULT_OUTCOME_DAYS", 28),
        # Demos and end-to-end tests run the chase ladder in seconds; production keeps an hour.
        min_due_seconds=_int("MIN_DUE_SECONDS", 3600),
    )
    values.update(overrides or {})
    if values["max_classification"] not in CLASSIFICATIONS:
        raise ValueError(f"MAX_CLASSIFICATION must be one of {', '.join(CLASSIFICATIONS)}")
    return Settings(**values)
