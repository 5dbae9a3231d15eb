"""``make run``: migrate, seed, start every process in the Procfile, print URLs and tokens.

Honours DATABASE_URL, REDIS_URL and the *_PORT variables. Without REDIS_URL it starts an
embedded redis-server on a free loopback port. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from services import SERVICES, settings_for
from shared.service import Service
from shared.settings import ROOT

TOKENS = [
    ("NCLCC", "issuer,admin", "centre staff (issuer, admin)"),
    ("NCLCC", "leader", "leadership"),
    ("GMP", "recipient", "Greater Manchester Police recipient"),
    ("MPS", "recipient", "Metropolitan Police recipient"),
]


def _stop_on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # A developer's machine: development secrets, and webhooks may go to local test receivers.
    os.environ.setdefault("APP_ENV", "development")
    os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
    env = os.environ.copy()
    redis = None
    if not env.get("REDIS_URL"):
        from shared.devredis import EmbeddedRedis

        redis = EmbeddedRedis().start()
        env["REDIS_URL"] = os.environ["REDIS_URL"] = redis.url
        print(f"embedded redis-server on {redis.url}")
    services = SERVICES
    try:
        prepare(services)
        print_welcome(services)
        sys.stdout.flush()
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile")], cwd=ROOT, env=env
        )
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)
            return honcho.wait()
    finally:
        if redis:
            redis.stop()


def prepare(services: tuple[Service, ...]) -> None:
    from shared.migrate import upgrade

    for service in services:
        upgrade(service, settings_for(service.name))
        print(f"{service.name}: migrations applied")
    from services.dissemination import create_app

    app = create_app()
    with app.app_context():
        from services.dissemination.directory import seed_directory
        from shared.db import get_session

        added, present = seed_directory(get_session(), app.extensions["settings"])
        print(f"organisation directory: {added} added, {present} already present")


def print_welcome(services: tuple[Service, ...]) -> None:
    from datetime import timedelta

    from shared.auth import mint_token

    settings = settings_for("dissemination")
    print("\nServices:")
    for service in services:
        url = settings.service_urls[service.name]
        print(f"  {service.name:14} {url}   docs {url}/docs   openapi {url}/openapi.json")
    print("\nTokens (valid 12 hours; more with `make token ORG=.. ROLE=..`):")
    for org, roles, who in TOKENS:
        token = mint_token(
            settings,
            sub=f"{roles.split(',')[0]}@{org.lower()}",
            org=org,
            roles=roles.split(","),
            ttl=timedelta(hours=12),
        )
        print(f"  {who}:\n    export TOKEN_{org}_{roles.split(',')[0].upper()}={token}")
    names = {service.name for service in services}
    if "metrics" in names:
        dashboard = f"{settings.service_urls['metrics']}/dashboard"
        print(f"\nLeadership dashboard: {dashboard} (sign in with the leadership token)")
    if "outcomes" in names:
        print(f"Recipients' web form: the form_url of each return, {settings.service_urls['outcomes']}/api/v1/returns")
    mail = (
        f"is kept in {settings.mail_sink_dir}"
        if settings.email_backend == "sink"
        else f"goes by {settings.email_backend}"
    )
    print(f"\nE-mail {mail}\nCtrl-C stops everything.\n")


if __name__ == "__main__":
    sys.exit(main())
