"""Daily partitions and retention of telemetry and device logs.

Partitions exist for every day a message may still carry (`max_past` back) up to `ahead` days in the
future, so a write never meets a missing partition; partitions wholly older than the retention are
dropped, and tenants with a shorter retention lose their older rows by DELETE. The DDL runs inside
SECURITY DEFINER functions the migration installed (the service role owns no table).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from muster.runtime.db import is_transient

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    table: str  # "telemetry" or "device_logs"
    retention_days: int
    past_days: int  # how old an accepted `ts` may be
    ahead_days: int
    tenant_days: Mapping[str, int]


def window(policy: RetentionPolicy, today: date) -> tuple[date, date, date]:
    """(first partition day to have, last one, first day to keep)."""
    first = today - timedelta(days=min(policy.past_days, policy.retention_days) + 1)
    return first, today + timedelta(days=policy.ahead_days), today - timedelta(days=policy.retention_days)


class PartitionMaintenance:
    def __init__(self, pool: Any, policies: list[RetentionPolicy], *, interval: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._pool = pool
        self._policies = policies
        self._interval = interval
        self._clock = clock

    async def run_once(self) -> dict[str, int]:
        """Create what is missing, drop what expired; returns counts for the log."""
        today = self._clock().date()
        counts = {"created": 0, "dropped": 0, "deleted": 0}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('muster.platform', 'on', true)")
            for policy in self._policies:
                first, last, keep_from = window(policy, today)
                counts["created"] += await conn.fetchval(
                    "SELECT ingest.ensure_daily_partitions($1, $2, $3)", policy.table, first, last)
                counts["dropped"] += await conn.fetchval(
                    "SELECT ingest.drop_daily_partitions_before($1, $2)", policy.table, keep_from)
                for tenant, days in policy.tenant_days.items():
                    if days < policy.retention_days:
                        cutoff = datetime.combine(today - timedelta(days=days), datetime.min.time(), UTC)
                        status = await conn.execute(
                            f"DELETE FROM ingest.{policy.table} WHERE tenant_id = $1 AND ts < $2",  # noqa: S608
                            tenant, cutoff)
                        counts["deleted"] += int(status.rsplit(" ", 1)[-1])
        return counts

    async def run(self) -> None:
        """Every `interval` until cancelled; a failed round is logged and retried sooner."""
        while True:
            delay = self._interval
            try:
                counts = await self.run_once()
                log.info("partition_maintenance", **counts)
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, OSError | asyncio.TimeoutError):
                    log.exception("partition_maintenance_failed")
                else:
                    log.warning("partition_maintenance_retry", error=repr(exc))
                delay = min(self._interval, 30.0)
            await asyncio.sleep(delay)
