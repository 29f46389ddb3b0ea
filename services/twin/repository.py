"""SQL of the twin context (SQLAlchemy Core): twins, desired revisions, the pending pushes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Row, Text, and_, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.device_projection import DeviceTombstones
from services.twin.delta import Rejection
from services.twin.documents import Leaf, Metadata
from services.twin.tables import desired_revisions, registry_tombstones, twins
from services.twin.twin import Revision, Twin

_DEVICES = DeviceTombstones(registry_tombstones, "twin.device:")


def _meta_in(data: Mapping[str, Any]) -> Metadata:
    return {key: Leaf.from_json(value) for key, value in data.items()}


def _meta_out(metadata: Metadata) -> dict[str, Any]:
    return {key: leaf.to_json() for key, leaf in metadata.items()}


def twin_of(row: Row[Any]) -> Twin:
    return Twin(tenant_id=row.tenant_id, device_id=row.device_id, create_time=row.create_time,
                update_time=row.update_time, desired=row.desired, desired_version=row.desired_version,
                desired_metadata=_meta_in(row.desired_meta), reported=row.reported,
                reported_version=row.reported_version, reported_metadata=_meta_in(row.reported_meta),
                rejections={k: Rejection.from_json(v) for k, v in row.rejections.items()}, in_sync=row.in_sync)


def _values(twin: Twin) -> dict[str, Any]:
    return {"desired": twin.desired, "desired_version": twin.desired_version,
            "desired_meta": _meta_out(twin.desired_metadata), "reported": twin.reported,
            "reported_version": twin.reported_version, "reported_meta": _meta_out(twin.reported_metadata),
            "rejections": {k: v.to_json() for k, v in twin.rejections.items()}, "in_sync": twin.in_sync,
            "update_time": twin.update_time}


_COLUMNS = [c for c in twins.c if c.name != "pushed_version"]


class TwinRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, device_id: str, *, for_update: bool = False) -> Twin | None:
        query = select(*_COLUMNS).where(twins.c.device_id == device_id)
        row = (await self._conn.execute(query.with_for_update() if for_update else query)).first()
        return twin_of(row) if row else None

    async def get_many_for_update(self, device_ids: Sequence[str]) -> dict[str, Twin]:
        """Locked in device order, so two batches never deadlock."""
        rows = (await self._conn.execute(
            select(*_COLUMNS).where(twins.c.device_id == any_(bindparam("ids", sorted(set(device_ids)),
                                                                        type_=ARRAY(Text))))
            .order_by(twins.c.device_id).with_for_update())).all()
        return {row.device_id: twin_of(row) for row in rows}

    async def save(self, twin: Twin) -> None:
        await self._conn.execute(update(twins).where(twins.c.device_id == twin.device_id).values(**_values(twin)))

    async def save_many(self, changed: Sequence[Twin]) -> None:
        if not changed:
            return
        statement = update(twins).where(twins.c.device_id == bindparam("b_device_id")).values(
            {key: bindparam(f"b_{key}") for key in _values(changed[0])})
        await self._conn.execute(statement, [
            {"b_device_id": t.device_id, **{f"b_{k}": v for k, v in _values(t).items()}} for t in changed])

    async def add_revision(self, revision: Revision) -> None:
        await self._conn.execute(desired_revisions.insert().values(
            device_id=revision.device_id, revision=revision.revision, tenant_id=revision.tenant_id,
            patch=revision.patch, desired=revision.desired, actor=revision.actor,
            rollback_of=revision.rollback_of, create_time=revision.create_time))

    async def get_revision(self, device_id: str, revision: int) -> Revision | None:
        row = (await self._conn.execute(select(desired_revisions).where(
            desired_revisions.c.device_id == device_id, desired_revisions.c.revision == revision))).first()
        return _revision_of(row) if row else None

    async def list_revisions(self, device_id: str, *, before: int | None, limit: int) -> list[Revision]:
        """Newest first; `before`: the revision the previous page ended with."""
        query = select(desired_revisions).where(desired_revisions.c.device_id == device_id)
        if before is not None:
            query = query.where(desired_revisions.c.revision < before)
        rows = (await self._conn.execute(query.order_by(desired_revisions.c.revision.desc()).limit(limit))).all()
        return [_revision_of(row) for row in rows]

    # --- the registry projection --------------------------------------------------------------

    async def alive(self, device_id: str, at: datetime) -> bool:
        """Take the device's lock and say whether an event at `at` is newer than its deletion, if any."""
        return await _DEVICES.alive(self._conn, device_id, at)

    async def create(self, twin: Twin) -> None:
        """A new, empty twin; an existing one is kept as it is (redelivered DeviceCreated)."""
        await self._conn.execute(pg_insert(twins).values(
            device_id=twin.device_id, tenant_id=twin.tenant_id, create_time=twin.create_time,
            update_time=twin.update_time).on_conflict_do_nothing(index_elements=["device_id"]))

    async def lock_many(self, device_ids: Sequence[str]) -> dict[str, datetime]:
        """`alive` for many devices in one round trip: their locks, and their deletion times."""
        return await _DEVICES.lock_many(self._conn, device_ids)

    async def create_many(self, created: Sequence[Twin]) -> None:
        """`create` for many devices in one statement."""
        if created:
            await self._conn.execute(pg_insert(twins).values([
                {"device_id": t.device_id, "tenant_id": t.tenant_id, "create_time": t.create_time,
                 "update_time": t.update_time} for t in created]).on_conflict_do_nothing(index_elements=["device_id"]))

    async def bury(self, device_id: str, at: datetime) -> None:
        """Forget the twin and its revisions; keep the newest deletion time as its tombstone."""
        await _DEVICES.bury(self._conn, device_id, at, forget=[desired_revisions, twins])

    # --- pushes to devices ----------------------------------------------------------------------

    async def pending_pushes(self, limit: int) -> list[Twin]:
        """Twins whose latest desired version has not been sent to the device yet."""
        rows = (await self._conn.execute(select(*_COLUMNS).where(twins.c.desired_version > twins.c.pushed_version)
                                         .limit(limit))).all()
        return [twin_of(row) for row in rows]

    async def mark_pushed(self, pushed: Mapping[str, int]) -> None:
        """Record the desired versions sent (forward only)."""
        if not pushed:
            return
        await self._conn.execute(
            update(twins).where(and_(twins.c.device_id == bindparam("b_device_id"),
                                     twins.c.pushed_version < bindparam("b_version")))
            .values(pushed_version=bindparam("b_version")),
            [{"b_device_id": device, "b_version": version} for device, version in pushed.items()])


def _revision_of(row: Row[Any]) -> Revision:
    return Revision(tenant_id=row.tenant_id, device_id=row.device_id, revision=row.revision, patch=row.patch,
                    desired=row.desired, actor=row.actor, create_time=row.create_time,
                    rollback_of=row.rollback_of)
