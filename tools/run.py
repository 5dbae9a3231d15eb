"""``make run``: migrate, seed, print URLs and tokens, then run every process of the Procfile
under supervisord (tools/supervision.py, docs/operations.md).

Honours DATABASE_URL, REDIS_URL and the *_PORT variables. Without REDIS_URL it starts an
embedded redis-server on a free loopback port. supervisord's configuration and control socket
are in RUN_DIR (``var/run`` by default; give each instance its own to run several side by side):

    .venv/bin/supervisorctl -c var/run/supervisord.conf status|stop|start|restart|pid <name>

A process that exits or is killed is restarted and the rest keep serving. Ctrl-C or SIGTERM
stops the services, then the embedded Redis, and exits 0.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import sys
from pathlib import Path

from services import SERVICES, settings_for
from shared.service import Service
from shared.settings import ROOT
from tools.supervision import Supervisor, read_procfile

TOKENS = [
    ("NCLCC", "issuer,admin", "centre staff (issuer, admin)"),
    ("NCLCC", "leader", "leadership"),
    ("GMP", "recipient", "Greater Manchester Police recipient"),
    ("MPS", "recipient", "Metropolitan Police recipient"),
]


def _stop_on_signal(_signum, _frame):
    raise KeyboardInterrupt


def main() -> int:
    # SIGINT too: a shell starts a background job with SIGINT ignored.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    _append_to_output_files()
    # A developer's machine: development secrets, and webhooks may go to local test receivers.
    os.environ.setdefault("APP_ENV", "development")
    os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # each line shows as it is written
    env = os.environ.copy()
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    run_dir = Path(env.get("RUN_DIR") or ROOT / "var" / "run").resolve()
    redis = None
    try:
        if not env.get("REDIS_URL"):
            from shared.devredis import EmbeddedRedis

            redis = EmbeddedRedis().start()
            env["REDIS_URL"] = os.environ["REDIS_URL"] = redis.url
            print(f"embedded redis-server on {redis.url}")
        prepare(SERVICES)
        supervisor = Supervisor.prepare(run_dir, read_procfile(ROOT / "Procfile", env))
        print_welcome(SERVICES, supervisor.config)
        sys.stdout.flush()
        return supervisor.run(env)
    except KeyboardInterrupt:
        return 0
    finally:
        # Last, once nothing uses it any more: stopped earlier, it would flood the log with the
        # services' connection errors.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if redis:
            redis.stop()


def _append_to_output_files() -> None:
    """supervisord opens /dev/stdout anew for each program's output. On a terminal or a pipe
    that is the same stream; on a file (``make run > run.log``) each opening writes at its own
    offset, over the others' lines, unless the file is in append mode for everyone."""
    for fd in (1, 2):
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        except OSError:
            pass


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


def print_welcome(services: tuple[Service, ...], config: Path) -> None:
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
    if "dissemination" in names:
        inbox = f"{settings.service_urls['dissemination']}/inbox"
        print(f"Recipients' pages: {inbox} (sign in with a recipient token, e.g. GMP's)")
        packages = f"{settings.service_urls['dissemination']}/packages"
        print(f"The centre's view of its packages: {packages} (sign in with the issuer token)")
    if "outcomes" in names:
        print(f"Recipients' web form: the form_url of each return, {settings.service_urls['outcomes']}/api/v1/returns")
    mail = (
        f"is kept in {settings.mail_sink_dir}"
        if settings.email_backend == "sink"
        else f"goes by {settings.email_backend}"
    )
    print(f"\nE-mail {mail}")
    ctl = Path(sys.executable).parent / "supervisorctl"
    print(f"Processes: {_shown(ctl)} -c {_shown(config)} status   (also stop, start, restart, pid <name>)")
    print("Ctrl-C stops everything.\n")


def _shown(path: Path) -> str:
    """A path as short as it can be said from where ``make run`` was started."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
