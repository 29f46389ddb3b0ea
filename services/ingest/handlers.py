"""Telemetry query use cases: the tenant comes from the caller's token; RLS limits every row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from muster.runtime.auth import Principal
from muster.runtime.db import Database, Scope, unavailable_when_unreachable
from muster.runtime.errors import InvalidArgument, NotFound
from muster.runtime.pagination import PageTokens, fingerprint, page_size
from services.ingest.log_queries import LogQuery, StoredLog
from services.ingest.queries import Bucket, PointValue, TelemetryQuery
from services.ingest.repository import TelemetryRepository

T = TypeVar("T")


@dataclass(frozen=True)
class QueryResult:
    points: list[PointValue]
    buckets: list[Bucket]
    next_page_token: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TelemetryHandlers:
    def __init__(self, db: Database, pages: PageTokens, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._pages = pages
        self.now = clock

    @asynccontextmanager
    async def _device(self, principal: Principal, device_id: str) -> AsyncIterator[TelemetryRepository]:
        """A repository in the caller's tenant, once the device is known there (NOT_FOUND otherwise)."""
        tenant = principal.require_tenant()
        with unavailable_when_unreachable():
            async with self._db.transaction(Scope.of_tenant(tenant)) as conn:
                repo = TelemetryRepository(conn)
                if not await repo.device_known(device_id):
                    raise NotFound(f"devices/{device_id} not found", reason="DEVICE_NOT_FOUND")
                yield repo

    async def query(self, principal: Principal, query: TelemetryQuery) -> QueryResult:
        if query.bucket is not None:
            async with self._device(principal, query.device_id) as repo:
                return QueryResult([], await repo.buckets(query), "")
        # Bound to the query as sent; the time range it resolved to travels in the token, so the next
        # page of an open-ended query ("the last hour") covers the same range as the first.
        bound = fingerprint(principal.tenant, query.device_id, query.metrics, *query.requested)
        after, window = self._after(query.page_token, bound)
        if window is not None:
            query = replace(query, start=window[0], end=window[1])
        async with self._device(principal, query.device_id) as repo:
            rows = await repo.raw(query, after, query.page_size + 1)
        page = rows[:query.page_size]
        token = self._next(rows, query.page_size, bound, query.start, query.end, lambda p: p.time)
        return QueryResult([point for point, _, _ in page], [], token)

    async def logs(self, principal: Principal, query: LogQuery) -> tuple[list[StoredLog], str]:
        bound = fingerprint(principal.tenant, query.device_id, query.min_level, query.text, *query.requested)
        after, window = self._after(query.page_token, bound)
        if window is not None:
            query = replace(query, start=window[0], end=window[1])
        async with self._device(principal, query.device_id) as repo:
            rows = await repo.logs(query, after, query.page_size + 1)
        token = self._next(rows, query.page_size, bound, query.start, query.end, lambda e: e.time)
        return [entry for entry, _, _ in rows[:query.page_size]], token

    def _after(self, token: str, bound: str) -> tuple[list[Any] | None, tuple[datetime, datetime] | None]:
        """A keyset token's (ts, stream_seq, idx) and the time range of the query that issued it."""
        values = self._pages.decode(token, fingerprint=bound)
        if values is None:
            return None, None
        if len(values) != 5:
            raise InvalidArgument.field("page_token", "is not valid; use next_page_token from the last response")
        return values[:3], (values[3], values[4])

    def _next(self, rows: Sequence[tuple[T, int, int]], size: int, bound: str, start: datetime, end: datetime,
              time_of: Callable[[T], datetime]) -> str:
        if len(rows) <= size:
            return ""
        item, seq, idx = rows[size - 1]
        return self._pages.encode(last=[time_of(item), seq, idx, start, end], fingerprint=bound)

    async def latest(self, principal: Principal, device_id: str, size: int, token: str) -> tuple[list[PointValue], str]:
        limit = page_size(size)
        bound = fingerprint(principal.tenant, device_id, "latest")
        after = self._pages.decode(token, fingerprint=bound)
        async with self._device(principal, device_id) as repo:
            rows = await repo.latest(device_id, str(after[0]) if after else None, limit + 1)
        page = rows[:limit]
        next_token = self._pages.encode(last=[page[-1].metric], fingerprint=bound) if len(rows) > limit else ""
        return page, next_token
