"""Applying presence inputs (connection events, wills, traffic, silence) to stored state, in the
caller's transaction: the devices' rows are locked, the rules of `presence` run in time order, the log
grows, and every presence change becomes a `DevicePresenceChanged` in the outbox (same transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.events import new_event
from muster.runtime.outbox import OutboxTables
from muster.runtime.timestamps import timestamp_of
from muster.twin.v1 import events_pb2 as tev
from services.twin.connectivity import ConnectionEvent, Kind
from services.twin.connectivity_repository import ConnectivityRepository, log_row
from services.twin.connectivity_tables import WILL_KIND
from services.twin.presence import (
    Connectivity,
    Outcome,
    PresenceChange,
    on_connected,
    on_disconnected,
    on_sweep,
    on_traffic,
    on_will,
)

SOURCE = "twin"


@dataclass(frozen=True)
class Will:
    """The broker published the device's will (`{"online": false}` on `status`) at `at`."""

    device_id: str
    at: datetime
    stream_seq: int


@dataclass(frozen=True)
class Traffic:
    """The device sent something at `at`; a birth message may bring its expected interval."""

    device_id: str
    at: datetime
    birth: bool = False
    stale_after: timedelta | None = None


Input = ConnectionEvent | Will | Traffic


def _time(item: Input) -> datetime:
    return item.time if isinstance(item, ConnectionEvent) else item.at


def presence_event(change: PresenceChange) -> tev.DevicePresenceChanged:
    return tev.DevicePresenceChanged(device=f"devices/{change.device_id}", presence=int(change.presence),  # type: ignore[arg-type]
                                     previous=int(change.previous), reason=change.reason,  # type: ignore[arg-type]
                                     since=timestamp_of(change.since), session_id=change.session_id)


class PresenceWriter:
    def __init__(self, conn: AsyncConnection, outbox: OutboxTables) -> None:
        self._conn = conn
        self._outbox = outbox
        self.repo = ConnectivityRepository(conn)

    async def apply(self, inputs: Sequence[Input]) -> set[str]:
        """Apply what belongs to known devices; returns the device ids without a twin (yet)."""
        tenants = await self.repo.tenants_of(item.device_id for item in inputs)
        known = [item for item in inputs if item.device_id in tenants]
        states = await self.repo.lock(item.device_id for item in known)
        changed: dict[str, Connectivity] = {}
        changes: list[PresenceChange] = []
        log: list[dict[str, object]] = []
        for item in sorted(known, key=_time):
            device = item.device_id
            state = changed.get(device) or states.get(device) or Connectivity(device)
            after, change = self._rule(state, item)
            log.extend(self._log(tenants[device], item))
            if after != state:
                changed[device] = after
            if change is not None:
                changes.append(change)
        await self._write(tenants, changed, log, changes)
        return {item.device_id for item in inputs} - set(tenants)

    async def sweep(self, now: datetime, default_stale_after: timedelta, limit: int = 1000) -> int:
        """ONLINE devices silent past their interval become STALE; returns how many."""
        silent = await self.repo.silent(now, default_stale_after, limit)
        changed: dict[str, Connectivity] = {}
        changes: list[PresenceChange] = []
        for device, (_, state) in silent.items():
            after, change = on_sweep(state, now, default_stale_after)
            if change is not None:
                changed[device] = after
                changes.append(change)
        await self._write({d: t for d, (t, _) in silent.items()}, changed, [], changes)
        return len(changes)

    async def seen(self, seen: dict[str, datetime]) -> None:
        """Batched last_seen (one statement); devices it finds STALE come back ONLINE."""
        stale = await self.repo.touch(seen)
        if stale:
            await self.apply([Traffic(device, seen[device]) for device in stale])

    @staticmethod
    def _rule(state: Connectivity, item: Input) -> Outcome:
        if isinstance(item, ConnectionEvent):
            rule = on_connected if item.kind is Kind.CONNECTED else on_disconnected
            return rule(state, item.session)
        if isinstance(item, Will):
            return on_will(state, item.at)
        return on_traffic(state, item.at, birth=item.birth, stale_after=item.stale_after)

    @staticmethod
    def _log(tenant: str, item: Input) -> Iterable[dict[str, object]]:
        if isinstance(item, ConnectionEvent):
            yield log_row(tenant, item.device_id, item.kind, item.time, item.session)
        elif isinstance(item, Will):
            yield {"tenant_id": tenant, "device_id": item.device_id, "session_id": f"will/{item.stream_seq}",
                   "kind": WILL_KIND, "time": item.at}

    async def _write(self, tenants: dict[str, str], changed: dict[str, Connectivity], log: list[dict[str, object]],
                     changes: list[PresenceChange]) -> None:
        await self.repo.save([(tenants[d], state) for d, state in sorted(changed.items())])
        await self.repo.append_log(log)
        await self._outbox.append(self._conn, [
            new_event(presence_event(change), source=SOURCE, tenant=tenants[change.device_id],
                      subject=f"devices/{change.device_id}") for change in changes])
