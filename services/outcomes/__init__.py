"""The outcomes service: expected returns, outcome returns and their amendments, the chaser,
and the recipient web form."""

from __future__ import annotations

import click
from flask import Flask, current_app

from services.outcomes.intake import EVENT_HANDLERS
from services.outcomes.models import Base, shared_models
from shared.service import Service, create_service_app

SERVICE = Service(
    name="outcomes",
    title="Outcomes service",
    description=(
        "Structured outcome returns for every intelligence package sent out: what each recipient "
        "did with it, what it achieved and how good it was. Late returns are chased up a ladder "
        "of reminders and escalations. Recipients file by API or through a signed web-form link."
    ),
    base=Base,
    models=shared_models,
    event_handlers=EVENT_HANDLERS,
)


def create_app(overrides: dict | None = None) -> Flask:
    app = create_service_app(SERVICE, __name__, overrides)
    from services.outcomes import form
    from services.outcomes.api import chase_policy, returns

    api = app.extensions["api"]
    for module in (returns, chase_policy):
        api.register_blueprint(module.blp)
    form.init_app(app)

    @app.cli.command("migrate")
    def migrate_command():
        """Apply this service's migrations."""
        from shared.migrate import upgrade

        upgrade("outcomes", current_app.extensions["settings"])
        click.echo("outcomes: migrations applied")

    return app
