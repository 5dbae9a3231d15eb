"""The dissemination service: organisation directory, packages, disseminations, audit log."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app

from services.dissemination import cron, jobs
from services.dissemination.feedback import EVENT_HANDLERS, apply_events
from services.dissemination.models import Base, shared_models
from shared.service import Service, create_service_app


def create_app(overrides: dict | None = None) -> Flask:
    app = create_service_app(SERVICE, __name__, overrides)
    from services.dissemination.api import disseminations, inbox, organisations, packages

    api = app.extensions["api"]
    for module in (organisations, packages, disseminations, inbox):
        api.register_blueprint(module.blp)
    from services.dissemination import pages

    pages.init_app(app)

    @app.cli.command("seed")
    def seed_command():
        """Add the UK forces, ROCUs and NCLCC to the organisation directory."""
        from services.dissemination.directory import seed_directory
        from shared.db import get_session

        added, present = seed_directory(get_session(), current_app.extensions["settings"])
        click.echo(f"organisation directory: {added} added, {present} already present")

    return app


SERVICE = Service(
    name="dissemination",
    title="Dissemination service",
    description=(
        "The National County Lines Coordination Centre's intelligence packages: the organisation "
        "directory, drafting, grading and issuing packages, delivery to each recipient, "
        "acknowledgement, withdrawal and the audit log. Recipients also read and acknowledge their packages "
        "on web pages (/inbox) after signing in with their identity provider."
    ),
    port=5001,
    create_app=create_app,
    metadata=Base.metadata,
    models=shared_models,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    batch_event_handler=apply_events,
    subscribers=("outcomes", "metrics"),
    signs_webhooks=True,
    jobs=jobs,
    schedules=cron.schedules,
)
