"""The RQ worker for every service's queues and the events queue, with RQ's scheduler (needed
for retries with backoff and ``enqueue_in``). ``python -m services worker [service ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rq import SimpleWorker

from shared.logs import configure_logging
from shared.monitoring import start_process_endpoint
from shared.outbox import EVENTS_QUEUE
from shared.queue import TracedJob, redis_connection
from shared.service import Service, runtime, service_named


def main(services: Sequence[Service], argv: list[str] | None = None) -> None:
    """Work the queues of ``services``, or of those named on the command line, then the events."""
    parser = argparse.ArgumentParser(
        prog="python -m services worker", description="Run an RQ worker for the services' queues."
    )
    parser.add_argument("services", nargs="*", help="service names (default: every service)")
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args(argv)
    configure_logging("worker")
    chosen = [service_named(name) for name in args.services] if args.services else list(services)
    # Each runtime (settings, engine) is built now rather than by the first job; the services'
    # job modules came with their declarations.
    runtimes = [runtime(service.name) for service in chosen]
    start_process_endpoint("worker", runtimes[0].settings, runtimes[0].settings.worker_metrics_port)
    # SimpleWorker runs each job in this process: measured here, a relay took ~17 ms in-process
    # against ~270 ms in a forked child, and bursts of events (seeding the directory, a rebuild)
    # otherwise delay every notification behind them. Scale out with more worker processes.
    worker = SimpleWorker(
        [*(service.name for service in chosen), EVENTS_QUEUE],
        connection=redis_connection(runtimes[0].settings.redis_url),
        job_class=TracedJob,  # each job logs under the request id it was enqueued with
    )
    worker.work(with_scheduler=True, burst=args.burst)
