"""One RQ cron process for every service's periodic jobs.

RQ's ``CronScheduler`` has no lock between instances, so run exactly one (``make run`` and
compose do); every periodic job is idempotent anyway. Each service lists its schedules in
``services/<name>/cron.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
from dataclasses import dataclass

from rq.cron import CronScheduler

from shared.queue import redis_connection
from shared.settings import SERVICES, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    func: str
    args: tuple
    interval_seconds: int
    queue: str | None = None


def service_schedules(service: str) -> list[Schedule]:
    try:
        module = importlib.import_module(f"services.{service}.cron")
    except ModuleNotFoundError:
        return []
    return module.schedules()


def build_scheduler(services: list[str]) -> CronScheduler:
    settings = load_settings(services[0])
    scheduler = CronScheduler(connection=redis_connection(settings.redis_url), name=f"cron:{','.join(services)}")
    for service in services:
        for schedule in service_schedules(service):
            module_name, _, func_name = schedule.func.rpartition(".")
            func = getattr(importlib.import_module(module_name), func_name)
            scheduler.register(
                func,
                queue_name=schedule.queue or service,
                args=schedule.args,
                interval=schedule.interval_seconds,
                job_timeout=300,
            )
    return scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the periodic jobs of the services.")
    parser.add_argument("services", nargs="*", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s cron %(message)s")
    services = args.services or [s for s in SERVICES if importlib.util.find_spec(f"services.{s}")]
    build_scheduler(services).start()


if __name__ == "__main__":
    main()
