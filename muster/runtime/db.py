"""PostgreSQL access with the caller's tenant set per transaction.

Every tenant-owned table has row-level security enabled and forced, with a policy comparing
`tenant_id` to the transaction-local setting `muster.tenant_id`; services connect as a role that
owns no table, so a query that forgets its WHERE clause still sees one tenant only. Platform-level
work (the outbox relay, tenant administration) opts in with `Scope.platform()`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from muster.runtime.errors import Unavailable

TENANT_SETTING = "muster.tenant_id"
PLATFORM_SETTING = "muster.platform"
_TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{2,39}$")

_SET_SCOPE = text(
    f"SELECT set_config('{TENANT_SETTING}', :tenant, true), set_config('{PLATFORM_SETTING}', :platform, true)"
)


@dataclass(frozen=True)
class Scope:
    """Whose rows a transaction may see: one tenant's, or (platform work only) everyone's."""

    tenant: str | None
    platform: bool = False

    @classmethod
    def of_tenant(cls, tenant: str) -> Scope:
        if not _TENANT_ID.match(tenant):
            raise ValueError(f"not a tenant id: {tenant!r}")
        return cls(tenant=tenant)

    @classmethod
    def platform_wide(cls) -> Scope:
        return cls(tenant=None, platform=True)


async def apply_scope(conn: AsyncConnection, scope: Scope) -> None:
    """Limit the open transaction to `scope` (transaction-local, so safe with pooled connections)."""
    platform = "on" if scope.platform else "off"
    await conn.execute(_SET_SCOPE, {"tenant": scope.tenant or "", "platform": platform})


def json_dumps(value: Any) -> str:
    """How JSON(B) values are written (the engine's serializer; bulk_insert uses it too)."""
    return orjson.dumps(value).decode()


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg-backed engine; JSON(B) columns go through orjson.

    No pre-ping: it costs three round trips per checkout. A connection PostgreSQL dropped fails its
    statement, SQLAlchemy invalidates it, and the pool opens a fresh one for the next caller.
    """
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, pool_recycle=1800,
        json_serializer=json_dumps, json_deserializer=orjson.loads,
    )


class Database:
    """Opens scoped transactions on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def transaction(self, scope: Scope) -> AsyncIterator[AsyncConnection]:
        """A transaction whose row visibility is limited to `scope`; commits on normal exit."""
        async with self.engine.begin() as conn:
            await apply_scope(conn, scope)
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def is_transient(exc: BaseException) -> bool:
    """A lost or refused database connection (a restart, a failover), as opposed to a bad statement:
    worth retrying, and UNAVAILABLE rather than INTERNAL to a caller."""
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError)  # e.g. connection refused while PostgreSQL restarts


@contextmanager
def unavailable_when_unreachable() -> Iterator[None]:
    """A lost or refused database connection reaches the caller as UNAVAILABLE (retry shortly), not
    as an internal error."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise Unavailable("the database is unreachable right now; retry shortly",
                              reason="DATABASE_UNAVAILABLE") from exc
        raise


def tenant_policy_sql(schema: str, table: str) -> list[str]:
    """DDL that makes `schema.table` visible only to its tenant (RLS enabled and forced).

    Rows with an empty tenant_id (platform rows, e.g. events about system templates) belong to no
    tenant: only platform scope sees them. (A pooled connection that once had a scope reads the
    setting back as '' afterwards, so `tenant_id = current_setting(...)` alone would show them.)"""
    qualified = f"{schema}.{table}"
    predicate = (f"(tenant_id <> '' AND tenant_id = current_setting('{TENANT_SETTING}', true)) "
                 f"OR current_setting('{PLATFORM_SETTING}', true) = 'on'")
    return [
        f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {qualified}",
        f"CREATE POLICY tenant_isolation ON {qualified} USING ({predicate}) WITH CHECK ({predicate})",
    ]
