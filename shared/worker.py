"""The RQ worker for every service's queues and the events queue, with RQ's scheduler (needed
for retries with backoff and ``enqueue_in``). ``python -m shared.worker [service ...]``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging

from rq import SimpleWorker

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
    from shared.events import EVENTS_QUEUE

    # SimpleWorker runs each job in this process instead of a fresh fork: measured here, a relay
    # took ~17 ms in-process against ~270 ms in a forked child, and bursts of events (seeding
    # the directory, a rebuild) otherwise delay every notification behind them. Jobs are short,
    # take ids, and open their own session; RQ's job timeout still applies. Scale out with more
    # worker processes, not forks.
    worker = SimpleWorker([*services, EVENTS_QUEUE], connection=connection)
    worker.work(with_scheduler=True, burst=args.burst)


if __name__ == "__main__":
    main()
