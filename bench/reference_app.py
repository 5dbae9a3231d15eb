"""The reference `make bench` measures the services against: the least an honest service could do
on the same two paths, on the same database, served by gunicorn with 4 sync workers (the issue's
reference; ``REFERENCE_THREADS=4`` serves it as the services are, 4 threads in each).

- ``POST /returns/<id>/outcomes``: check the bearer JWT (kept for a minute once accepted, as the
  services do), validate the body with the outcomes
  service's own marshmallow schema, insert one row, commit.
- ``GET /packages/<id>``: check the bearer JWT, select one row, insert one audit row, commit.

No outbox, no idempotency, no versions, no clearance: what is left is the floor. Its tables live
in a schema of their own (``bench_reference``) beside the services' on PostgreSQL, or in a SQLite
file when there is no DATABASE_URL.

    gunicorn --workers 4 'bench.reference_app:create_app()'
"""

from __future__ import annotations

import json
import os
import uuid

from flask import Flask, abort, request
from marshmallow import ValidationError
from sqlalchemy import create_engine, text

from services import settings_for
from services.outcomes.schemas import OutcomeInputSchema
from shared.auth import TokenError, VerifiedTokens

SCHEMA = "bench_reference"


def database_url() -> str:
    url = os.environ.get("REFERENCE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url and url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url or "sqlite:///" + os.path.join(os.environ.get("VAR_DIR", "var"), "reference.db")


def tables(on_postgres: bool) -> dict[str, str]:
    prefix = f"{SCHEMA}." if on_postgres else ""
    return {name: prefix + name for name in ("packages", "outcomes", "audit")}


def create_tables(package_ids: list[str]) -> None:
    """Make the reference's tables, empty, and one package row per id (``make bench`` calls this)."""
    engine = create_engine(database_url())
    on_postgres = engine.dialect.name == "postgresql"
    names = tables(on_postgres)
    json_type = "jsonb" if on_postgres else "text"
    serial = "bigserial PRIMARY KEY" if on_postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
    with engine.begin() as connection:
        if on_postgres:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        else:
            for name in names.values():
                connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
        connection.execute(text(f"CREATE TABLE {names['packages']} (id varchar(36) PRIMARY KEY, body {json_type})"))
        connection.execute(
            text(
                f"CREATE TABLE {names['outcomes']} (id {serial}, return_id varchar(36), "
                f"filed_by varchar(200), body {json_type}, filed_at timestamp)"
            )
        )
        connection.execute(
            text(
                f"CREATE TABLE {names['audit']} (id {serial}, principal varchar(200), method varchar(8), "
                f"path varchar(500), status integer, at timestamp)"
            )
        )
        for package_id in package_ids:
            connection.execute(
                text(f"INSERT INTO {names['packages']} (id, body) VALUES (:id, :body)"),
                {"id": package_id, "body": json.dumps({"id": package_id, "title": "Reference package"})},
            )
    engine.dispose()


def create_app() -> Flask:
    app = Flask(__name__)
    settings = settings_for("outcomes")
    engine = create_engine(database_url(), pool_size=2, pool_pre_ping=False)
    names = tables(engine.dialect.name == "postgresql")
    schema = OutcomeInputSchema()
    # The services keep the tokens they accepted for a minute (shared.auth.VerifiedTokens): so
    # does the least they could do, or the ratio would count that against the reference.
    tokens = VerifiedTokens()
    now = "now()" if engine.dialect.name == "postgresql" else "CURRENT_TIMESTAMP"

    def principal():
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            abort(401)
        try:
            return tokens.principal(settings, header[7:])
        except TokenError:
            abort(401)

    @app.post("/returns/<uuid:return_id>/outcomes")
    def file_outcome(return_id: uuid.UUID):
        who = principal()
        try:
            values = schema.load(request.get_json(force=True, silent=True) or {})
        except ValidationError as error:
            return {"errors": error.messages}, 422
        with engine.begin() as connection:
            row = connection.execute(
                text(
                    f"INSERT INTO {names['outcomes']} (return_id, filed_by, body, filed_at) "
                    f"VALUES (:return_id, :filed_by, :body, {now}) RETURNING id"
                ),
                {"return_id": str(return_id), "filed_by": who.sub, "body": json.dumps(values)},
            ).one()
        return {"id": row.id, "return_id": str(return_id), **values}, 201

    @app.get("/packages/<uuid:package_id>")
    def read_package(package_id: uuid.UUID):
        who = principal()
        with engine.begin() as connection:
            row = connection.execute(
                text(f"SELECT body FROM {names['packages']} WHERE id = :id"), {"id": str(package_id)}
            ).first()
            connection.execute(
                text(
                    f"INSERT INTO {names['audit']} (principal, method, path, status, at) "
                    f"VALUES (:principal, 'GET', :path, :status, {now})"
                ),
                {"principal": who.sub, "path": request.path, "status": 200 if row else 404},
            )
        if row is None:
            abort(404)
        return row.body if isinstance(row.body, dict) else json.loads(row.body)

    return app
