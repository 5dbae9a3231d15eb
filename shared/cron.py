"""One RQ cron process for every service's periodic jobs.

RQ's ``CronScheduler`` has no lock between instances, so run exactly one (``make run`` and
compose do); every periodic job is idempotent anyway. Each service declares its schedules
(``Service.schedules``, written in ``services/<name>/cron.py``); ``python -m services cron``
starts this process with the registry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rq.cron import CronScheduler

from shared.logs import configure_logging
from shared.monitoring import start_process_endpoint
from shared.queue import redis_connection
from shared.service import Service, service_named, settings_for


@dataclass(frozen=True)
class Schedule:
    func: Callable
    args: tuple
    interval_seconds: int
    queue: str | None = None


def build_scheduler(services: Sequence[Service]) -> CronScheduler:
    """A scheduler with every schedule of ``services``. A service whose schedules cannot be
    read stops it here: a cron process that schedules nothing must not look healthy."""
    settings = {service.name: settings_for(service.name) for service in services}
    connection = redis_connection(settings[services[0].name].redis_url)
    scheduler = CronScheduler(connection=connection, name=f"cron:{','.join(settings)}")
    for service in services:
        for schedule in service.schedules(settings[service.name]):
            scheduler.register(
                schedule.func,
                queue_name=schedule.queue or service.name,
                args=schedule.args,
                interval=schedule.interval_seconds,
                job_timeout=300,
            )
    return scheduler


def main(services: Sequence[Service], argv: list[str] | None = None) -> None:
    """Schedule the periodic jobs of ``services``, or of those named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m services cron", description="Run the services' periodic jobs.")
    parser.add_argument("services", nargs="*", help="service names (default: every service)")
    args = parser.parse_args(argv)
    configure_logging("cron")
    chosen = [service_named(name) for name in args.services] if args.services else list(services)
    settings = settings_for(chosen[0].name)
    start_process_endpoint("cron", settings, settings.cron_metrics_port)
    build_scheduler(chosen).start()
