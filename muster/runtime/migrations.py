"""Alembic, run the same way for every service:
`python -m muster.runtime.migrations upgrade --service registry`.

Each service keeps its migrations in `services/<name>/migrations/` with a two-line `env.py` that
calls `run_env`. Migrations run as the schema owner (MUSTER_MIGRATION_URL); afterwards the
service's own role (MUSTER_SERVICE_ROLE) is granted data access to every table of the schema,
and nothing more, so RLS applies to it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.ext.asyncio import async_engine_from_config

URL_ENV = "MUSTER_MIGRATION_URL"
ROLE_ENV = "MUSTER_SERVICE_ROLE"


def alembic_config(service: str, url: str, service_role: str) -> Config:
    package = importlib.import_module(f"services.{service}")
    assert package.__file__ is not None
    config = Config()
    config.set_main_option("script_location", str(Path(package.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["schema"] = service
    config.attributes["service_role"] = service_role
    return config


def grant_sql(schema: str, role: str) -> list[str]:
    """Data access for the service role: no DDL, no ownership, so RLS is enforced on it."""
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    ]


UNMANAGED_TABLES = "unmanaged_tables"
"""Key in a service's `MetaData.info`: a regex of tables the service creates at run time (e.g. daily
partitions) that drift checks must not report as unknown."""


def _own_objects(schema: str, metadata: MetaData | None) -> Callable[[str | None, str, Any], bool]:
    """Drift checks look only at the service's own schema (other services share the database) and
    skip the tables it manages at run time."""
    unmanaged = re.compile(metadata.info[UNMANAGED_TABLES]) if metadata and UNMANAGED_TABLES in metadata.info else None

    def include(name: str | None, type_: str, _parents: Any) -> bool:
        if type_ == "schema":
            return name == schema
        if type_ == "table" and unmanaged is not None and name is not None:
            return not unmanaged.fullmatch(name)
        return True

    return include


def run_env(metadata: MetaData | None = None) -> None:
    """Body of every service's migrations/env.py (online mode, asyncpg)."""
    config = context.config
    schema: str = config.attributes["schema"]
    role: str = config.attributes["service_role"]

    def migrate(connection: Connection) -> None:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        context.configure(connection=connection, target_metadata=metadata, version_table_schema=schema,
                          include_schemas=True, include_name=_own_objects(schema, metadata),
                          transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
            for statement in grant_sql(schema, role):
                connection.execute(text(statement))

    async def run() -> None:
        engine = async_engine_from_config(config.get_section(config.config_ini_section, {}),
                                          prefix="sqlalchemy.", poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m muster.runtime.migrations")
    parser.add_argument("action", choices=["upgrade", "check"])
    parser.add_argument("--service", required=True)
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    url, role = os.environ.get(URL_ENV), os.environ.get(ROLE_ENV)
    if not url or not role:
        parser.error(f"{URL_ENV} and {ROLE_ENV} must be set")
    config = alembic_config(args.service, url, role)
    if args.action == "upgrade":
        command.upgrade(config, args.revision)
    else:
        command.check(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
