"""The outcomes service: expected returns, outcome returns and their amendments, the chaser,
and the recipient web form."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from services.outcomes import cron, jobs
from services.outcomes.intake import EVENT_HANDLERS
from services.outcomes.models import Base, shared_models
from shared import monitoring
from shared.service import Service, create_service_app


def create_app(overrides: dict | None = None) -> Flask:
    app = create_service_app(SERVICE, __name__, overrides)
    from services.outcomes import form
    from services.outcomes.api import chase_policy, returns

    api = app.extensions["api"]
    for module in (returns, chase_policy):
        api.register_blueprint(module.blp)
    form.init_app(app)
    monitoring.add_gauge(
        app,
        "ofs_returns_overdue",
        "Outcome returns past their due date with no final return, not closed.",
        returns.count_overdue,
    )
    return app


SERVICE = Service(
    name="outcomes",
    title="Outcomes service",
    description=(
        "Structured outcome returns for every intelligence package sent out: what each recipient "
        "did with it, what it achieved and how good it was. Late returns are chased up a ladder "
        "of reminders and escalations. Recipients file by API or through a signed web-form link."
    ),
    port=5002,
    create_app=create_app,
    metadata=Base.metadata,
    models=shared_models,
    migrations=Path(__file__).parent / "migrations",
    event_handlers=EVENT_HANDLERS,
    subscribers=("dissemination", "metrics"),
    signs_webhooks=True,
    jobs=jobs,
    schedules=cron.schedules,
)
