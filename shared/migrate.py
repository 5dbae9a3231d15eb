"""Alembic, per service: each service's migrations live in ``services/<name>/migrations``
and run in that service's schema (PostgreSQL) or file (SQLite)."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.db import Database
from shared.settings import Settings, load_settings


def alembic_config(service: str, database: Database) -> Config:
    folder = Path(importlib.import_module(f"services.{service}").__path__[0]) / "migrations"
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", database.settings.database_url.replace("%", "%%"))
    config.attributes["service"] = service
    config.attributes["database"] = database
    return config


def upgrade(service: str, settings: Settings | None = None, revision: str = "head") -> None:
    database = Database(settings or load_settings(service), for_worker=True)
    try:
        database.create_schema()
        command.upgrade(alembic_config(service, database), revision)
    finally:
        database.engine.dispose()


def run_env(context) -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    service = config.attributes["service"]
    database: Database = config.attributes["database"]
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    with database.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
            version_table_schema=database.schema,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
