"""Engine construction and schema migration of the profile database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Execution option read by the SQLite "begin" hook: writers take the write lock up front (BEGIN IMMEDIATE), so
# concurrent writers queue on busy_timeout instead of failing when a deferred read transaction tries to upgrade.
_SQLITE_IMMEDIATE = "pos_offers_sqlite_immediate"

# Any constant works: it only has to be the same for every process migrating the same PostgreSQL database.
_MIGRATION_LOCK_KEY = 0x706F735F6F666672

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check_schema(schema: str) -> str:
    # Unquoted lower-case identifiers only: the same name then works in search_path and in CREATE SCHEMA.
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lower-case letters, digits and _")
    return schema


def make_engine(url: str, *, schema: str | None = None) -> sa.Engine:
    """An engine for `url` (see Settings.sql_url); `schema` (PostgreSQL only) becomes every connection's search_path."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # Plain postgresql:// means the psycopg 3 driver we ship, not psycopg2 (as in Settings.sql_url).
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["options"] = f"-csearch_path={_check_schema(schema)}"
        connect_args["connect_timeout"] = 5  # a black-holed database must fail probes, not hang them
        # hide_parameters: error messages then never quote bound values (customer ids) into logs.
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)
    raise ValueError(f"unsupported database {parsed.render_as_string(hide_password=True)!r}: use SQLite or PostgreSQL")


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    database = url.database or ""
    in_memory = database in {"", ":memory:"} or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # SQLAlchemy emits BEGIN itself (below): pysqlite's implicit transactions would defeat savepoints,
        # transactional DDL and BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 5000")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = bool(conn.get_execution_options().get(_SQLITE_IMMEDIATE, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def write_engine(engine: sa.Engine) -> sa.Engine:
    """`engine` for read-write transactions (same pool): on SQLite they start with BEGIN IMMEDIATE."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_SQLITE_IMMEDIATE: True})
    return engine


def alembic_config(connection: Connection, *, schema: str | None = None) -> Config:
    """Alembic configuration without an ini file: migrations/env.py runs on `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def migrate(engine: sa.Engine, *, schema: str | None = None) -> None:
    """Upgrade the database to the newest migration; a no-op when it is already there.

    Runs in one transaction (DDL is transactional on SQLite and PostgreSQL), serialised between processes that
    start at the same time: an advisory lock on PostgreSQL, the write lock on SQLite.
    """
    with write_engine(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            if schema is not None:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_check_schema(schema)}")
        elif schema is not None:
            raise ValueError("schema is only supported on PostgreSQL")
        command.upgrade(alembic_config(conn, schema=schema), "head")
