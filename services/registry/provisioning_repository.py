"""Persistence of provisioning tokens, device secrets and registrations (SQLAlchemy Core).

Like the other registry repositories each works on its unit of work's connection, under row-level
security. The one exception to "tenant scope only" is `ProvisioningTokenRepository.tenant_of_hash`,
which a registration runs in a platform-scope transaction of its own: the caller has no tenant yet,
only a token, and that lookup returns nothing but the token's tenant and id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry import tables
from services.registry.provisioning import DeviceSecret, HardwareInfo, ProvisioningToken
from services.registry.repository import _page, _stale


class ProvisioningTokenRepository:
    t = tables.provisioning_tokens
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "site": t.c.site_id, "template": t.c.template_id, "labels": t.c.labels,
        "create_time": t.c.create_time, "expire_time": t.c.expire_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> ProvisioningToken:
        return ProvisioningToken(
            tenant_id=row.tenant_id, id=row.id, secret_hash=row.secret_hash, display_name=row.display_name,
            site_id=row.site_id, template_id=row.template_id, labels=row.labels, max_uses=row.max_uses,
            use_count=row.use_count, claim_existing=row.claim_existing, expire_time=row.expire_time,
            revoke_time=row.revoke_time, create_time=row.create_time, version=row.version)

    async def tenant_of_hash(self, secret_hash: str) -> tuple[str, str] | None:
        """(tenant id, token id) of the token with this hash, for a platform-scope lookup."""
        row = (await self._conn.execute(
            select(self.t.c.tenant_id, self.t.c.id).where(self.t.c.secret_hash == secret_hash))).first()
        return (row.tenant_id, row.id) if row else None

    async def get(self, token_id: str) -> ProvisioningToken | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.id == token_id))).first()
        return self._from_row(row) if row else None

    async def add(self, token: ProvisioningToken) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    id=token.id, tenant_id=token.tenant_id, secret_hash=token.secret_hash,
                    display_name=token.display_name, site_id=token.site_id, template_id=token.template_id,
                    labels=dict(token.labels), max_uses=token.max_uses, use_count=token.use_count,
                    claim_existing=token.claim_existing, expire_time=token.expire_time,
                    revoke_time=token.revoke_time, create_time=token.create_time, version=token.version))
        except IntegrityError as exc:
            raise AlreadyExists(f"provisioning token {token.id!r} already exists",
                                reason="PROVISIONING_TOKEN_EXISTS") from exc

    async def save(self, token: ProvisioningToken, expected_version: int) -> None:
        """Write the mutable state (use count, revocation) back, if nobody changed it meanwhile."""
        result = await self._conn.execute(
            update(self.t).where(self.t.c.id == token.id, self.t.c.version == expected_version)
            .values(use_count=token.use_count, revoke_time=token.revoke_time, version=token.version))
        if result.rowcount != 1:
            raise _stale(token.name, expected_version)

    async def consume(self, token_id: str, now: datetime) -> ProvisioningToken | None:
        """Count one use, atomically: the token after the use, or None if it is revoked, expired or used
        up at this instant. Concurrent callers queue on the row lock and re-check the condition, so a
        token with one use left lets exactly one of them through."""
        row = (await self._conn.execute(
            update(self.t)
            .where(self.t.c.id == token_id, self.t.c.revoke_time.is_(None), self.t.c.expire_time > now,
                   self.t.c.use_count < self.t.c.max_uses)
            .values(use_count=self.t.c.use_count + 1, version=self.t.c.version + 1)
            .returning(*self.t.c))).first()
        return self._from_row(row) if row else None

    async def list(self, query: Page) -> list[ProvisioningToken]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query)
        return [self._from_row(r) for r in rows]


class DeviceSecretRepository:
    t = tables.device_secrets

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> DeviceSecret:
        return DeviceSecret(tenant_id=row.tenant_id, device_id=row.device_id, id=row.id, secret_hash=row.secret_hash,
                            create_time=row.create_time, expire_time=row.expire_time)

    async def for_device(self, device_id: str, *, lock: bool = False) -> list[DeviceSecret]:
        """Every stored secret of the device; `lock` holds them until commit (one rotation at a time)."""
        stmt = select(self.t).where(self.t.c.device_id == device_id).order_by(self.t.c.create_time, self.t.c.id)
        if lock:
            stmt = stmt.with_for_update()
        return [self._from_row(r) for r in (await self._conn.execute(stmt)).all()]

    async def add(self, secret: DeviceSecret) -> None:
        await self._conn.execute(insert(self.t).values(
            tenant_id=secret.tenant_id, device_id=secret.device_id, id=secret.id, secret_hash=secret.secret_hash,
            create_time=secret.create_time, expire_time=secret.expire_time))

    async def expire(self, device_id: str, secret_id: str, at: datetime) -> None:
        await self._conn.execute(update(self.t).where(self.t.c.device_id == device_id, self.t.c.id == secret_id)
                                 .values(expire_time=at))

    async def prune(self, device_id: str, now: datetime) -> None:
        """Drop secrets that stopped working (they can never work again)."""
        await self._conn.execute(delete(self.t).where(self.t.c.device_id == device_id,
                                                      self.t.c.expire_time.is_not(None), self.t.c.expire_time <= now))


class RegistrationRepository:
    t = tables.device_registrations

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, *, tenant_id: str, device_id: str, token_id: str, serial: str, hardware: HardwareInfo,
                  claimed: bool, now: datetime) -> None:
        await self._conn.execute(insert(self.t).values(
            tenant_id=tenant_id, device_id=device_id, token_id=token_id, serial=serial,
            hardware=hardware.as_dict(), claimed=claimed, register_time=now))

    async def device_with_serial(self, serial: str) -> str | None:
        """Id of the tenant's device with this serial (serials are unique per tenant), if any."""
        devices = tables.devices
        row = (await self._conn.execute(select(devices.c.id).where(devices.c.serial == serial))).first()
        return str(row.id) if row else None
