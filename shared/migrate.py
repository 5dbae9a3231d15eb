"""Alembic, per service: each service's migrations live in its declared folder
(``services/<name>/migrations``) and run in that service's schema (PostgreSQL) or file (SQLite)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from shared.db import Database
from shared.service import Service
from shared.settings import Settings


def alembic_config(service: Service, database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(service.migrations))
    config.set_main_option("sqlalchemy.url", database.settings.database_url.replace("%", "%%"))
    config.attributes["service"] = service
    config.attributes["database"] = database
    return config


def upgrade(service: Service, settings: Settings, revision: str = "head") -> None:
    database = Database(settings, for_worker=True)
    try:
        database.create_schema()
        command.upgrade(alembic_config(service, database), revision)
    finally:
        database.engine.dispose()


def run_env(context) -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    service: Service = config.attributes["service"]
    database: Database = config.attributes["database"]
    with database.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=service.metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
            version_table_schema=database.schema,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
