"""Fake provisioning repositories (same interface as services/registry/provisioning_repository.py).

`consume` keeps the SQL's contract: one use is counted only while the token is not revoked, not
expired and not used up, else None. (The race it settles in PostgreSQL is tested against PostgreSQL.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry.provisioning import DeviceSecret, HardwareInfo, ProvisioningToken

from .registry_state import Repository, RowLevelSecurityViolation, paged, stale


class FakeProvisioningTokenRepository(Repository):
    def _mine(self) -> list[ProvisioningToken]:
        return [t for t in self._state.provisioning_tokens.values() if self._visible(t.tenant_id)]

    async def tenant_of_hash(self, secret_hash: str) -> tuple[str, str] | None:
        found = [t for t in self._mine() if t.secret_hash == secret_hash]
        return (found[0].tenant_id, found[0].id) if found else None

    async def get(self, token_id: str) -> ProvisioningToken | None:
        token = self._state.provisioning_tokens.get(token_id)
        return token if token is not None and self._visible(token.tenant_id) else None

    async def add(self, token: ProvisioningToken) -> None:
        self._check(token.tenant_id)
        if token.tenant_id not in self._state.tenants:
            raise RowLevelSecurityViolation(f"foreign key: tenant {token.tenant_id!r} does not exist")
        if token.id in self._state.provisioning_tokens or any(
                t.secret_hash == token.secret_hash for t in self._state.provisioning_tokens.values()):
            raise AlreadyExists(f"provisioning token {token.id!r} already exists", reason="PROVISIONING_TOKEN_EXISTS")
        self._state.provisioning_tokens[token.id] = token

    async def save(self, token: ProvisioningToken, expected_version: int) -> None:
        self._check(token.tenant_id)
        current = await self.get(token.id)
        if current is None or current.version != expected_version:
            raise stale(token.name, expected_version)
        self._state.provisioning_tokens[token.id] = replace(current, use_count=token.use_count,
                                                            revoke_time=token.revoke_time, version=token.version)

    async def consume(self, token_id: str, now: datetime) -> ProvisioningToken | None:
        current = await self.get(token_id)
        if current is None or current.revoke_time is not None or current.expire_time <= now \
                or current.use_count >= current.max_uses:
            return None
        used = current.used()
        self._state.provisioning_tokens[token_id] = used
        return used

    async def list(self, query: Page) -> list[ProvisioningToken]:
        return paged(self._mine(), query)


class FakeDeviceSecretRepository(Repository):
    async def for_device(self, device_id: str, *, lock: bool = False) -> list[DeviceSecret]:
        found = [s for (d, _), s in self._state.device_secrets.items() if d == device_id and self._visible(s.tenant_id)]
        return sorted(found, key=lambda s: (s.create_time, s.id))

    async def add(self, secret: DeviceSecret) -> None:
        self._check(secret.tenant_id)
        device = self._state.devices.get(secret.device_id)
        if device is None or device.tenant_id != secret.tenant_id:
            raise RowLevelSecurityViolation(f"foreign key: device {secret.device_id!r} does not exist")
        self._state.device_secrets[(secret.device_id, secret.id)] = secret

    async def expire(self, device_id: str, secret_id: str, at: datetime) -> None:
        current = self._state.device_secrets.get((device_id, secret_id))
        if current is not None and self._visible(current.tenant_id):
            self._state.device_secrets[(device_id, secret_id)] = replace(current, expire_time=at)

    async def prune(self, device_id: str, now: datetime) -> None:
        for secret in await self.for_device(device_id):
            if secret.expire_time is not None and secret.expire_time <= now:
                del self._state.device_secrets[(device_id, secret.id)]


class FakeRegistrationRepository(Repository):
    async def add(self, *, tenant_id: str, device_id: str, token_id: str, serial: str, hardware: HardwareInfo,
                  claimed: bool, now: datetime) -> None:
        self._check(tenant_id)
        if device_id in self._state.registrations:
            raise AlreadyExists(f"device {device_id!r} is already registered")
        self._state.registrations[device_id] = {
            "tenant_id": tenant_id, "token_id": token_id, "serial": serial, "hardware": hardware.as_dict(),
            "claimed": claimed, "register_time": now}

    async def device_with_serial(self, serial: str) -> str | None:
        found = [d.id for d in self._state.devices.values() if d.serial == serial and self._visible(d.tenant_id)]
        return found[0] if found else None
