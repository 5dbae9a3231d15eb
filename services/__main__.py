"""The processes that serve every service at once, given the registry:

python -m services worker [service ...] [--burst]   the RQ worker (shared/worker.py)
python -m services cron [service ...]               the one RQ cron process (shared/cron.py)
python -m services migrate [service ...]            apply each service's migrations
"""

from __future__ import annotations

import sys

from services import SERVICES
from shared import cron, worker
from shared.procs import exit_now
from shared.service import service_named, settings_for


def migrate(argv: list[str]) -> None:
    from shared.migrate import upgrade

    for service in [service_named(name) for name in argv] or SERVICES:
        upgrade(service, settings_for(service.name))
        print(f"{service.name}: migrations applied")


COMMANDS = {
    "worker": lambda argv: worker.main(SERVICES, argv),
    "cron": lambda argv: cron.main(SERVICES, argv),
    "migrate": migrate,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
    if sys.argv[1] in ("worker", "cron"):
        exit_now(0)  # stopped as asked: nothing left worth a slow teardown
