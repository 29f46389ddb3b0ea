"""Device transports in PostgreSQL: the JSON kept in devices.transports, and the device_iccids index
the device repository rewrites with it, so a device can be found by its SIM's ICCID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import AlreadyExists
from services.registry import tables
from services.registry.transports import (
    LINK_NAMES,
    Cellular,
    Link,
    Protocol,
    Serial,
    SerialStandard,
    Transport,
)

_LINKS: dict[str, type[Link]] = {name: kind for kind, name in LINK_NAMES.items()}


def transports_to_json(transports: Sequence[Transport]) -> list[dict[str, Any]]:
    """`[{"protocol": 1, "cellular": {"iccid": ...}}]`: enums as their numbers, like the proto."""
    rows: list[dict[str, Any]] = []
    for t in transports:
        row: dict[str, Any] = {"protocol": int(t.protocol or 0)}
        if t.link is not None:
            row[LINK_NAMES[type(t.link)]] = {k: int(v) if isinstance(v, SerialStandard) else v
                                             for k, v in asdict(t.link).items()}
        rows.append(row)
    return rows


def transports_from_json(rows: Sequence[Mapping[str, Any]]) -> tuple[Transport, ...]:
    found: list[Transport] = []
    for row in rows:
        link: Link | None = None
        for name, kind in _LINKS.items():
            if name in row:
                fields = dict(row[name])
                if kind is Serial:
                    fields["standard"] = SerialStandard(fields.get("standard", 0))
                link = kind(**fields)
        protocol = row.get("protocol", 0)
        found.append(Transport(Protocol(protocol) if protocol else None, link))
    return tuple(found)


class IccidIndex:
    """device_iccids: one row per SIM ICCID of a device, unique within the tenant."""

    t = tables.device_iccids

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def replace(self, tenant_id: str, device_id: str, transports: Sequence[Transport], *,
                      new: bool = False) -> None:
        """Make the device's rows match `transports` (`new`: it has none yet); ALREADY_EXISTS when
        another device has one of its ICCIDs. The caller's transaction then rolls back the device
        write with it."""
        if not new:
            await self._conn.execute(delete(self.t).where(self.t.c.device_id == device_id))
        for i, transport in enumerate(transports):
            if not isinstance(transport.link, Cellular) or not transport.link.iccid:
                continue
            iccid = transport.link.iccid
            try:
                async with self._conn.begin_nested():
                    await self._conn.execute(insert(self.t).values(tenant_id=tenant_id, iccid=iccid,
                                                                   device_id=device_id))
            except IntegrityError as exc:
                other = await self.device_for(iccid)
                raise AlreadyExists(
                    f"device.transports[{i}].cellular.iccid: SIM {iccid} is already in "
                    f"{f'devices/{other}' if other else 'another device'}; take it out of that device first",
                    reason="ICCID_IN_USE", metadata={"iccid": iccid, "field": f"device.transports[{i}].cellular.iccid"},
                ) from exc

    async def device_for(self, iccid: str) -> str | None:
        """The id of the tenant's device with this SIM (under platform scope: any tenant's)."""
        row = (await self._conn.execute(select(self.t.c.device_id).where(self.t.c.iccid == iccid))).first()
        return str(row.device_id) if row else None
