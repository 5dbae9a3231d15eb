"""The metrics service: a read model fed by events, answering what each package achieved."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask

from services.metrics import jobs
from services.metrics.models import Base, shared_models
from services.metrics.projections import EVENT_HANDLERS, apply_events, lock_projection
from shared.service import Service, create_service_app


def create_app(overrides: dict | None = None) -> Flask:
    app = create_service_app(SERVICE, __name__, overrides)
    # evidence adds the evidence pack's pages to the dashboard's blueprint before it is registered.
    from services.metrics import dashboard, evidence  # noqa: F401
    from services.metrics.api import metrics

    app.extensions["api"].register_blueprint(metrics.blp)
    dashboard.init_app(app)

    @app.cli.command("rebuild")
    def rebuild_command():
        """Rebuild the read model from the dissemination and outcomes services' event logs."""
        click.echo(f"metrics: read model rebuilt from {jobs.rebuild_read_model()} events")

    return app


SERVICE = Service(
    name="metrics",
    title="Metrics service",
    description=(
        "What each intelligence package achieved: reach, return compliance, how recipients used it, "
        "results, intelligence quality and a verdict per package; per organisation, per month and per "
        "grade. Built from the other services' events; answers from pre-aggregated figures."
    ),
    port=5003,
    create_app=create_app,
    metadata=Base.metadata,
    models=shared_models,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_event_handler=apply_events,
    inbox_lock=lock_projection,
    jobs=jobs,
)
