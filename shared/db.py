"""Engine, declarative bases and sessions: one session per request, one per job.

Each service has its own ``Base`` (its own metadata) so its migrations see only its tables.
On PostgreSQL each service lives in its own schema (``search_path`` set per connection), so
three services can share one ``DATABASE_URL`` without reading each other's tables.
"""

from __future__ import annotations

import functools
import logging
import select as io_select
import time
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from flask import Flask, current_app, g
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy import column as named_column
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import NullType
from uuid_utils.compat import uuid7

from shared import clock
from shared.settings import Settings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Now, or the demo clock's moment while one is set (``shared.clock``, development only)."""
    return clock.demo_now() or datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A new row's or event's id: a UUID version 7 (RFC 9562, made by ``uuid_utils``), whose
    first 48 bits are the time it was made, in milliseconds, and the rest a counter that starts at
    a random value each millisecond and random bits. Ids one process makes one after another sort
    one after another (across processes, to the millisecond), so a new row's id goes in at the end
    of each index that holds it (the outbox's, the inboxes', the metrics' timeline and states), not
    on a random page of it: with random ids (version 4) each batch the metrics applied touched a
    page per event all over those indexes, and the bulk load slowed as they outgrew the database's
    cache (docs/performance.md, thirteenth round).

    An id tells when it was made. For a package, a return, an outcome or an event, its readers
    are shown that moment, or one close to it, already; the one id seen by an organisation that
    cannot read its row is a pass-on's ``onward_from``, which tells the organisation a package was
    passed to when the one passing it on received it. No access depends on an id being
    unguessable: every read by id checks the reader's organisation and clearance, and form links
    are signed."""
    return uuid7()


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back time-zone aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# What each service's declarative Base sets (``class Base(DeclarativeBase)`` in its models.py, a
# class of its own so that type checkers see it): fresh metadata, so its migrations see only its
# tables, and how Python types map to columns.
TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: UTCDateTime, dict: JSONType, list: JSONType}


def service_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


# A database connection that goes silent (a host gone, a network cut, no reset sent) is found
# dead by TCP keepalives within a minute (30 s quiet, then 3 probes 10 s apart) instead of the
# kernel's two hours: a web thread or a job waiting on it gets an error it can answer, where a
# gthread worker's --timeout would never stop it (shared/gunicorn_conf.py).
TCP_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def closed_by_server(dbapi_connection) -> bool:
    """Whether an idle pooled PostgreSQL connection was closed by the server (a restart,
    ``pg_terminate_backend``, ``idle_session_timeout``): its socket has something to read.

    A connection at rest in the pool has answered everything it asked, so the server has nothing
    to say to it until it asks again (the services never ``LISTEN``), except when it hangs up:
    then it sends its last word (a FATAL error) and closes, and the socket turns readable.
    Looking costs one ``poll`` and no round trip, where SQLAlchemy's pre-ping sent a ``SELECT 1``
    and waited for it on every checkout (5% of a metrics read's CPU, and one of its two round
    trips: docs/performance.md, tenth round). What it cannot see is a host that vanished without
    a word; the pre-ping would have waited on that one too, and TCP keepalives give it up
    (``TCP_KEEPALIVES``). Anything readable counts as closed: at worst a reconnect, never a failed
    request."""
    if dbapi_connection.closed:
        return True
    try:
        socket = dbapi_connection.pgconn.socket
    except psycopg.OperationalError:  # the connection is lost
        return True
    poller = io_select.poll()
    poller.register(socket, io_select.POLLIN)  # POLLHUP and POLLERR are reported anyway
    return bool(poller.poll(0))


def _replace_if_closed_by_server(dbapi_connection, _record, _proxy) -> None:
    """The pool's checkout: a connection the server closed is thrown away and another taken, and
    so is every other connection the pool made before it (SQLAlchemy's ``InvalidatePoolError``,
    as its pre-ping does): a restart or an operator's ``pg_terminate_backend`` closes them all, and
    one whose server process has not quite gone yet would pass the poll and fail its request."""
    if closed_by_server(dbapi_connection):
        raise InvalidatePoolError("the server closed this pooled connection")


class Database:
    """One service's engine and session factory."""

    def __init__(self, settings: Settings, *, for_worker: bool = False):
        self.settings = settings
        self.schema = settings.database_schema
        self.engine = self._create_engine(settings, for_worker)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        # An engine of its own for reads in one statement (``get_read_connection``): its
        # connections are always in autocommit, each statement its own transaction, so there is
        # no ``BEGIN`` or ``COMMIT`` to send, and nothing to roll back when one goes back to the
        # pool. The engine's own connections, switched into autocommit for a read and back as
        # they returned to the pool (an execution option), cost the read both switches and a
        # rollback (py-spy, docs/performance.md, twelfth round). Its pool opens a connection
        # only when a read asks for one: the metrics service's package reads alone do.
        self.autocommit_engine = reads = self._create_engine(settings, for_worker, autocommit=True)
        # A test or a migration that disposes of the engine's connections means this one's too
        # (``reads``, not ``self``: the engine keeps its listener, and no cycle keeps them both).
        event.listen(self.engine, "engine_disposed", lambda _engine: reads.dispose())

    def _create_engine(self, settings: Settings, for_worker: bool, autocommit: bool = False) -> Engine:
        kwargs: dict = {"future": True}
        if autocommit:
            kwargs["isolation_level"] = "AUTOCOMMIT"
            # Nothing to roll back on a connection that is never in a transaction.
            kwargs["pool_reset_on_return"] = None
        url = settings.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        if url.startswith("postgresql"):
            kwargs["connect_args"] = {"options": f"-csearch_path={self.schema},public", **TCP_KEEPALIVES}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            self._ensure_sqlite_dir(url)
        if for_worker:
            # The RQ worker runs one job at a time: one connection per service, and the overflow
            # for a job that opens a second session meanwhile (``commit_after_sending``'s fresh
            # one). Its connections are kept between jobs: under load it
            # runs tens of relays a second, and a new connection for each (NullPool, as it was)
            # cost a connect and a new PostgreSQL backend, with its catalog caches to fill, every
            # time. The checkout still replaces one the database closed (``closed_by_server``). A
            # SQLite file is opened in no time: there, no connection is held between jobs.
            if url.startswith("postgresql"):
                kwargs["pool_size"] = 2
                kwargs["max_overflow"] = 2
            else:
                kwargs["poolclass"] = NullPool
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        if url.startswith("postgresql"):
            event.listen(engine, "checkout", _replace_if_closed_by_server)
        return engine

    @staticmethod
    def _ensure_sqlite_dir(url: str) -> None:
        from pathlib import Path

        path = url.split("///", 1)[-1].split("?")[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def create_schema(self) -> None:
        """Create this service's PostgreSQL schema (no-op on SQLite)."""
        if self.schema:
            with self.engine.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

    def session(self) -> Session:
        return self.sessionmaker()

    @contextmanager
    def job_session(self) -> Iterator[Session]:
        """A session for one background job: rolled back on error, always closed."""
        session = self.session()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def init_app(app: Flask, database: Database) -> None:
    app.extensions["database"] = database
    app.teardown_appcontext(_close_session)


def get_db() -> Database:
    return current_app.extensions["database"]


def get_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = get_db().session()
    return g.db_session


def get_read_connection() -> Connection:
    """The request's connection for a read in one statement, in autocommit (each statement
    committed alone: no ``BEGIN`` or ``COMMIT`` to wait for), opened on first use and given back
    when the request ends. For a view whose one statement is its whole read, and writes nothing
    but its own audit entry (atomic alone); it is not the request's session, whose writes stay
    in transactions as ever. A Core connection, not an ORM session in autocommit: with its own
    pool, it cut a metrics read's CPU by a ninth (docs/performance.md, twelfth round)."""
    if "db_read_connection" not in g:
        g.db_read_connection = get_db().autocommit_engine.connect()
    return g.db_read_connection


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    connection = g.pop("db_read_connection", None)
    try:
        if session is not None:
            session.close()
    finally:
        if connection is not None:
            connection.close()


def after_commit(session: Session, callback) -> None:
    """Run ``callback()`` once the session's current transaction has committed (never on
    rollback): used to enqueue work only for changes that really happened."""
    session.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: nothing is committed until the transaction is
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the change is committed; sweeps catch up
            import logging

            logging.getLogger(__name__).exception("after-commit callback failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # A savepoint rolled back: what the transaction did before it still stands. A callback
        # registered inside it runs anyway, harmlessly (a relay finds nothing to send).
        return
    session.info.pop("after_commit", None)


def commit_after_sending(
    session: Session, record: Callable[[Session], None], redo: Callable[[Session], None], tries: int = 3
) -> None:
    """Record, then commit, what a job did after something left the building (a message was
    sent).

    If the connection is lost before the commit (the database restarted, the connection was
    terminated), the record goes with it and the job's retry would send the message again. So
    ``redo`` writes it once more in a fresh session on a new connection, a few times a little
    apart; it must read the row again under its lock and do nothing if the record is there
    (the commit may have landed before the connection went). Only when every try fails does the
    error reach the job, whose retry then sends again: at least once, never silently lost.
    ``record`` runs inside that guard: it may write at once (an event's rows go in as it is
    emitted), so the lost connection may show there, before the commit.
    """
    try:
        record(session)
        session.commit()
        return
    except OperationalError:
        session.rollback()
        log.warning("connection lost before a send was recorded: recording it again")
    bind = session.get_bind()
    for attempt in range(1, tries + 1):
        time.sleep(0.5 * attempt)
        fresh = Session(bind=bind, expire_on_commit=False)
        try:
            redo(fresh)
            fresh.commit()
            return
        except OperationalError:
            fresh.rollback()
            if attempt == tries:
                raise
        finally:
            fresh.close()


def commit(session: Session) -> None:
    """Commit the unit of work, unless an enclosing idempotent request will commit it.

    An ``Idempotency-Key`` request stores its answer in the same transaction as the change,
    so the view's commit is deferred to that wrapper (see ``shared.idempotency``).
    """
    if session.info.get("defer_commit"):
        session.flush()
    else:
        session.commit()


def chunks(values: list, size: int = 900) -> Iterator[list]:
    """``values`` in lists short enough for one IN (...) on either database."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def among(session: Session, column, ids: Iterable[uuid.UUID]) -> Iterator:
    """The conditions ``column IN ids``, as few as can be sent. On PostgreSQL one, ``column =
    ANY(ids)`` with the ids as one text parameter: a statement text that never changes, parsed
    once by psycopg and planned once (a bulk load's ``IN`` lists, 900 placeholders each, were a
    new text every time, expanded by SQLAlchemy and split by psycopg in Python: 8% of its time;
    profiled). Elsewhere (SQLite: at most 999 parameters a statement), ``IN`` lists of 900."""
    ids = list(ids)
    if not ids:
        return
    if not isinstance(column.type, Uuid):  # the ids are listed as they are, unquoted
        raise TypeError(f"among() takes a UUID column, not {column}")
    if session.get_bind().dialect.name == "postgresql":
        listed = "{" + ",".join(map(str, ids)) + "}"
        # Untyped, so PostgreSQL reads the parameter as the array itself, once. Typed as text,
        # SQLAlchemy sends it as ``$1::VARCHAR`` and the cast to uuid[] is redone for every row
        # the index looks at: 33 s instead of 8 ms for 5,000 ids (bench-metrics, profiled).
        yield column == any_(cast(bindparam(None, listed, type_=NullType()), ARRAY(column.type)))
        return
    for chunk in chunks(ids):
        yield column.in_(chunk)


def table_of(model: type) -> Table:
    """The table a mapped class is kept in, for Core statements."""
    return typing.cast(Table, inspect(model).local_table)


def insert_rows(
    session: Session, model: type, rows: list[dict], *, skip_existing: tuple[str, ...] = (), in_order: bool = False
) -> None:
    """Insert many rows into ``model``'s table in the session's transaction, in one statement.

    On PostgreSQL the rows travel as one JSON document, ``INSERT ... SELECT FROM
    jsonb_to_recordset(...)``: the statement's text is the same whatever the number of rows, so
    it is parsed and planned once, and the rows are encoded by orjson (``rows_as_json``). A
    multi-row ``VALUES`` list (what SQLAlchemy makes of an executemany) is a new, long text each
    time, split by psycopg in Python on every call; arrays per column (``unnest``) are quoted
    element by element in Python by psycopg's text array dumper (27% of a bulk load, profiled).
    Elsewhere, an executemany. Every row names the same columns; a column they leave out takes
    its Python default;
    ``skip_existing`` names the unique key of rows to leave as they are when already there
    (``ON CONFLICT DO NOTHING``). ``in_order``: the rows take the values of an autoincrementing
    key in the order given (on PostgreSQL each row carries its place, and the rows are inserted
    sorted by it: an ``INSERT ... SELECT`` promises no order of its own).
    """
    if not rows:
        return
    table = table_of(model)
    columns = tuple(
        column
        for column in table.columns
        if column.name in rows[0] or (column.default is not None and not column.default.is_sequence)
    )
    missing = [column for column in columns if column.name not in rows[0]]
    if missing:
        complete = [row | {column.name: value_or_default(row, column) for column in missing} for row in rows]
    else:  # every column given (the rows name the same columns)
        complete = rows
    on_postgres = session.get_bind().dialect.name == "postgresql"
    statement = _insert_statement(
        table, tuple(column.name for column in columns), skip_existing, on_postgres, in_order and on_postgres
    )
    if on_postgres:
        if in_order:
            complete = [row | {ROW_PLACE: place} for place, row in enumerate(complete)]
        execute_write(session, statement, {"rows": rows_as_json(complete)})
    else:
        session.connection().execute(statement, complete)


def update_rows(session: Session, model: type, rows: list[dict], *, key: str) -> None:
    """Set each row's columns on the row of ``model``'s table whose ``key`` column matches, in one
    statement: ``UPDATE ... FROM jsonb_to_recordset(...)`` on PostgreSQL (for the reasons
    ``insert_rows`` gives), an executemany elsewhere. Every row names the same columns.

    The rows are locked in whatever order the join meets them: callers that may run at once
    take a lock of their own first (the metrics projection does, ``lock_projection``)."""
    if not rows:
        return
    table = table_of(model)
    names = tuple(rows[0])
    on_postgres = session.get_bind().dialect.name == "postgresql"
    statement = _update_statement(table, names, key, on_postgres)
    if on_postgres:
        execute_write(session, statement, {"rows": rows_as_json(rows)}, rows_expected=len(rows), table=table.name)
        return
    result = session.connection().execute(statement, [{f"new_{name}": row[name] for name in names} for row in rows])
    _check_rowcount(table.name, len(rows), result.rowcount)


def _check_rowcount(table: str, expected: int, found: int) -> None:
    if found != expected:  # as the ORM's flush: a row gone since it was read is an error
        raise StaleDataError(f"{table}: {expected} rows to update, {found} found")


WRITE_PIPELINE = "write pipeline"  # the session.info key of the pipeline a session's writes go into


class _WritePipeline:
    """Statements sent to PostgreSQL without waiting for their answers (psycopg's pipeline mode):
    the server runs them while the caller goes on working out the next. See ``pipelined_writes``."""

    def __init__(self, session: Session):
        self.connection = session.connection()
        self.driver: Any = self.connection.connection.driver_connection  # a psycopg Connection
        self.sent: list[tuple[Any, int | None, str, Callable[[Any], None] | None]] = []

    def send(
        self, statement, params: dict, rows_expected: int | None, table: str, answered: Callable[[Any], None] | None
    ) -> None:
        compiled = _plain_compiled(statement, self.connection.dialect)
        cursor = self.driver.cursor()
        self.sent.append((cursor, rows_expected, table, answered))
        # Never prepared on the server: psycopg prepares a statement the sixth time it runs it,
        # and records it as prepared without waiting for the answer; in a pipeline whose earlier
        # statement failed, the server skips that PREPARE, and every later use on the connection
        # would fail ("prepared statement does not exist"; test in tests/test_insert_rows.py).
        values = compiled.construct_params(params)
        for name, process in compiled._bind_processors.items():  # as SQLAlchemy's execution does
            if name in values:
                values[name] = process(values[name])
        cursor.execute(str(compiled), values, prepare=False)


@functools.cache
def _plain_compiled(statement, dialect):
    """``statement`` compiled once, for a raw psycopg cursor: only a statement that needs no more
    of SQLAlchemy's execution than its parameters' conversions (no defaults or onupdate values
    it would fill in, no parameters it would expand) is sent, so the pipeline sends what
    SQLAlchemy would."""
    compiled = statement.compile(dialect=dialect)
    needs_execution = (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names  # its parameters renamed, which ``send`` would not follow
    )
    if needs_execution:
        raise ValueError(f"not sent through the write pipeline (SQLAlchemy's execution needed): {compiled}")
    return compiled


def execute_write(
    session: Session,
    statement,
    params: dict,
    *,
    rows_expected: int | None = None,
    table: str = "",
    answered: Callable[[Any], None] | None = None,
) -> None:
    """Run a write whose result nothing waits for: into the session's write pipeline when one is
    open (``pipelined_writes``), else at once. ``rows_expected``: the rows it must change (else
    ``StaleDataError``, checked when the pipeline has its answers); ``answered``: called with the
    first row it returns (a ``RETURNING`` statement's), once it has its answer."""
    pipeline: _WritePipeline | None = session.info.get(WRITE_PIPELINE)
    if pipeline is not None:
        pipeline.send(statement, params, rows_expected, table, answered)
        return
    result = session.connection().execute(statement, params)
    if rows_expected is not None:
        _check_rowcount(table, rows_expected, result.rowcount)
    if answered is not None:
        answered(result.fetchone())


@contextmanager
def pipelined_writes(session: Session) -> Iterator[None]:
    """On PostgreSQL, the writes made through ``execute_write`` inside the block (``insert_rows``,
    ``update_rows``, and the callers' own) are sent without waiting for each answer: PostgreSQL
    runs them while Python works out the next, and the block's end waits for them all (a bulk
    load spent ~45% of its time waiting on its writes one after the other; profiled). Nothing
    inside the block may read through the session (its answer would not be there yet): reads
    come first. An error of any of them is raised as soon as psycopg hears of it (by a later
    write, at the latest at the block's end), as SQLAlchemy would have raised it (an
    ``IntegrityError``, say), and the transaction is then to be rolled back (to a savepoint will
    do). Only statements SQLAlchemy would send as they are may go in (``_plain_compiled``).
    Elsewhere (SQLite), the writes run as they come."""
    if session.get_bind().dialect.name != "postgresql" or WRITE_PIPELINE in session.info:
        yield
        return
    import psycopg

    pipeline = _WritePipeline(session)
    session.info[WRITE_PIPELINE] = pipeline
    try:
        try:
            with pipeline.driver.pipeline():
                yield
        except psycopg.Error as error:  # as SQLAlchemy raises it, so callers' handlers catch it
            raise DBAPIError.instance(None, None, error, psycopg.Error) from error
        finally:
            del session.info[WRITE_PIPELINE]
        # Every answer taken before a row count may refuse the block: what the caller keeps of
        # them (an audit entry's id, say) is then there for its rollback to take away.
        for cursor, _, _, answered in pipeline.sent:
            if answered is not None:
                answered(cursor.fetchone())
        for cursor, rows_expected, table, _ in pipeline.sent:
            if rows_expected is not None:
                _check_rowcount(table, rows_expected, cursor.rowcount)
    finally:
        for cursor, *_ in pipeline.sent:
            cursor.close()


def in_write_pipeline(session: Session) -> bool:
    return WRITE_PIPELINE in session.info


@functools.cache
def _update_statement(table: Table, names: tuple[str, ...], key: str, on_postgres: bool):
    changed = [name for name in names if name != key]
    if on_postgres:
        new = rows_from_json(table, names)
        return update(table).where(table.c[key] == new.c[key]).values({name: new.c[name] for name in changed})
    return (
        update(table)
        .where(table.c[key] == bindparam(f"new_{key}", type_=table.c[key].type))
        .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in changed})
    )


def value_or_default(row: dict, column: Column):
    """The row's value for ``column``, else the column's Python default (None without one)."""
    if column.name in row:
        return row[column.name]
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        return default.arg(None)  # type: ignore[attr-defined]
    return default.arg  # type: ignore[attr-defined]


# The key each row of an ordered ``insert_rows`` carries its place under (no column is named so).
ROW_PLACE = "_place"


@functools.cache
def _insert_statement(
    table: Table, names: tuple[str, ...], skip_existing: tuple[str, ...], on_postgres: bool, in_order: bool = False
):
    """``insert_rows``' statement, built once per table, columns and database: on PostgreSQL
    from one JSON document (sorted by each row's place when ``in_order``), elsewhere for an
    executemany."""
    statement: Any
    if on_postgres and in_order:
        source = rows_from_json(table, names, numbered=True)
        rows = select(*(source.c[name] for name in names)).order_by(source.c[ROW_PLACE])
        statement = pg_insert(table).from_select(list(names), rows)
    elif on_postgres:
        statement = pg_insert(table).from_select(list(names), select(*rows_from_json(table, names).c))
    else:
        statement = sqlite_insert(table)
    if skip_existing:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_existing))
    return statement


@functools.cache
def rows_from_json(table: Table, names: tuple[str, ...], numbered: bool = False):
    """``jsonb_to_recordset(CAST(:rows AS jsonb)) AS anon(name type, ...)``: the rows of a JSON
    array of objects (``rows_as_json``) as a table of ``table``'s columns ``names``, typed as
    they are (PostgreSQL); ``numbered``: with each row's place too (``ROW_PLACE``, an integer).
    Built once per table and set of columns, so its SQL is cached."""
    columns = [named_column(name, table.c[name].type) for name in names]
    if numbered:
        columns.append(named_column(ROW_PLACE, Integer()))
    return (
        func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), JSONB))
        .table_valued(*columns)
        .render_derived(with_types=True)
    )


def rows_as_json(rows: list[dict]) -> str:
    """Rows for ``rows_from_json``: ids and timestamps as PostgreSQL reads them back.

    orjson writes the ids itself and the timestamps through ``_json_value``, which refuses a
    naive one (as the column type does): a third of the json module's time, whose Python
    ``default`` for every id and timestamp cost 22% of a bulk load (profiled)."""
    try:
        return orjson.dumps(rows, default=_json_value, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except orjson.JSONEncodeError as error:  # says only "not JSON serializable"; ours says why
        raise (error.__cause__ or error) from None


def _json_value(value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware one")
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")
