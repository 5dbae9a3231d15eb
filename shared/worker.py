"""The RQ worker for every service's queues, with RQ's scheduler (needed for retries with
backoff and ``enqueue_in``). ``python -m shared.worker [service ...]``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging

from rq import Worker

from shared.queue import redis_connection
from shared.settings import SERVICES, load_settings


def available_services() -> list[str]:
    return [s for s in SERVICES if importlib.util.find_spec(f"services.{s}") is not None]


def preload(services: list[str]) -> None:
    """Import each service and build its runtime before RQ forks: every job's child process
    then starts with them ready instead of importing Flask and the models again (the engine
    uses NullPool, so nothing connected is shared across the fork)."""
    from shared.service import runtime

    for service in services:
        runtime(service)
        if importlib.util.find_spec(f"services.{service}.jobs"):
            importlib.import_module(f"services.{service}.jobs")
    importlib.import_module("shared.events")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run an RQ worker for the services' queues.")
    parser.add_argument("services", nargs="*")
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s worker %(message)s")
    services = args.services or available_services()
    preload(services)
    connection = redis_connection(load_settings(services[0]).redis_url)
    worker = Worker(services, connection=connection)
    worker.work(with_scheduler=True, burst=args.burst)


if __name__ == "__main__":
    main()
