"""Connectivity and health queries: the tenant comes from the caller's token; RLS limits every row; a
device the tenant does not have is NOT_FOUND."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from muster.runtime.auth import Principal
from muster.runtime.db import Database, Scope, unavailable_when_unreachable
from muster.runtime.errors import FieldViolation, InvalidArgument, NotFound
from muster.runtime.pagination import PageTokens, fingerprint, page_size
from services.twin.connection_filter import connection_filter
from services.twin.connectivity_repository import ConnectivityRepository
from services.twin.health import Assessment, Threshold, assess
from services.twin.presence import Connectivity

DEFAULT_LOG_RANGE = timedelta(hours=72)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConnectivityView:
    state: Connectivity
    stale_after: timedelta
    counts: Mapping[str, int]


@dataclass(frozen=True)
class HealthView:
    assessment: Assessment
    report_time: datetime | None
    values: Mapping[str, float]


class ConnectivityHandlers:
    def __init__(self, db: Database, pages: PageTokens, *, default_stale_after: timedelta,
                 thresholds: Mapping[str, Threshold], clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._pages = pages
        self._stale_after = default_stale_after
        self._thresholds = thresholds
        self.now = clock

    @asynccontextmanager
    async def _device(self, principal: Principal, device_id: str) -> AsyncIterator[ConnectivityRepository]:
        with unavailable_when_unreachable():
            async with self._db.transaction(Scope.of_tenant(principal.require_tenant())) as conn:
                repo = ConnectivityRepository(conn)
                if not await repo.device_known(device_id):
                    raise NotFound(f"devices/{device_id} not found", reason="DEVICE_NOT_FOUND")
                yield repo

    async def connectivity(self, principal: Principal, device_id: str) -> ConnectivityView:
        async with self._device(principal, device_id) as repo:
            state = await repo.get(device_id) or Connectivity(device_id)
            counts = await repo.disconnect_counts(device_id, self.now())
        return ConnectivityView(state, state.stale_after or self._stale_after, counts)

    async def health(self, principal: Principal, device_id: str) -> HealthView:
        async with self._device(principal, device_id) as repo:
            row = await repo.health(device_id)
        values: dict[str, float] = dict(row.health) if row else {}
        return HealthView(assess(values if row else None, self._thresholds), row.report_time if row else None, values)

    async def connection_events(self, principal: Principal, device_id: str, *, start: datetime | None,
                                end: datetime | None, size: int, token: str,
                                filter: str = "") -> tuple[list[Any], str]:
        problems: list[FieldViolation] = []
        end_at = end or self.now()
        start_at = start or end_at - DEFAULT_LOG_RANGE
        if start_at >= end_at:
            problems.append(FieldViolation("start_time", "must be before end_time"))
        try:
            limit = page_size(size)
        except InvalidArgument as exc:
            problems += exc.violations
            limit = 0
        try:
            condition = connection_filter(filter)
        except InvalidArgument as exc:
            problems += exc.violations
        if problems:
            raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)
        bound = fingerprint(principal.tenant, device_id, start, end, filter)
        values = self._pages.decode(token, fingerprint=bound)
        if values is not None:
            if len(values) != 5:
                raise InvalidArgument.field("page_token", "is not valid; use next_page_token from the last response")
            start_at, end_at = values[3], values[4]  # the range the first page resolved to
        async with self._device(principal, device_id) as repo:
            rows = await repo.log_page(device_id, start_at, end_at, values[:3] if values else None, limit + 1,
                                       condition)
        if len(rows) <= limit:
            return rows, ""
        last = rows[limit - 1]
        return rows[:limit], self._pages.encode(last=[last.time, last.session_id, last.kind, start_at, end_at],
                                                fingerprint=bound)
