"""Use cases of provisioning: tokens (create, read, list, revoke), a device registering itself with a
token, and rotating a device's secret. Each in one unit of work, with its events.

RegisterDevice has no operator token: the provisioning token is the credential. Its tenant is found
by the token's hash in a platform-scope read (tenant and id, nothing else); everything after that runs
in the tenant's scope, under row-level security like any other tenant call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from muster.runtime.filtering import FieldKind, FilterField, FilterSchema
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm, PageTokens
from services.registry import commands as cmd
from services.registry.domain import Device, DeviceState, new_device_id, validate_device
from services.registry.handlers import insert_device
from services.registry.provisioning import (
    TOKEN_PREFIX,
    HardwareInfo,
    ProvisioningToken,
    SecretHasher,
    check_claim,
    issue_secret,
    new_token_id,
    new_token_secret,
    rotation_expiries,
    token_expiry,
    valid_secrets,
    validate_grace_period,
    validate_registration,
    validate_token,
)
from services.registry.provisioning_mapping import credentials_changed, hardware_to_proto, token_to_proto
from services.registry.template_handlers import _found
from services.registry.unit_of_work import RegistryUnitOfWork, UnitOfWorkFactory

Clock = Callable[[], datetime]
MAX_TOKEN_LENGTH = 200
TOPIC_PREFIX = "muster/v1/devices/{id}/"

PROVISIONING_TOKENS = Listing(
    schema=FilterSchema(fields={
        "display_name": FilterField("display_name", FieldKind.STRING),
        "site": FilterField("site", FieldKind.STRING, normalize=lambda v: v.removeprefix("sites/")),
        "template": FilterField("template", FieldKind.STRING, normalize=lambda v: v.removeprefix("templates/")),
        "create_time": FilterField("create_time", FieldKind.TIMESTAMP),
        "expire_time": FilterField("expire_time", FieldKind.TIMESTAMP),
    }, map_fields={"labels": "labels"}),
    sortable=("display_name", "create_time", "expire_time"),
    default_order=(OrderTerm("create_time", descending=False),),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MqttEndpoint:
    """Where devices reach the MQTT server (as configured for the deployment, not where NATS binds)."""

    host: str
    port: int


@dataclass(frozen=True)
class CreateProvisioningToken:
    display_name: str = ""
    site_id: str | None = None
    template_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    max_uses: int = 0  # 0: the default, one-time
    claim_existing: bool = False
    expire_time: datetime | None = None
    ttl: timedelta | None = None


@dataclass(frozen=True)
class RegisterDevice:
    provisioning_token: str
    serial: str
    hardware: HardwareInfo = field(default_factory=HardwareInfo)
    display_name: str = ""


@dataclass(frozen=True)
class Registration:
    device: Device
    device_secret: str
    mqtt: MqttEndpoint
    claimed: bool

    @property
    def topic_prefix(self) -> str:
        return TOPIC_PREFIX.format(id=self.device.id)


@dataclass(frozen=True)
class Rotation:
    device: Device
    device_secret: str
    previous_secrets_expire_time: datetime
    valid_secret_count: int


def _invalid_token() -> Unauthenticated:
    # Same answer for a malformed, unknown or deleted token, whichever tenant it might belong to.
    return Unauthenticated("the provisioning token is not valid: check it, or ask an operator for a new one",
                           reason="PROVISIONING_TOKEN_INVALID")


class ProvisioningHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, hasher: SecretHasher, mqtt: MqttEndpoint,
                 clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._hash = hasher
        self._mqtt = mqtt
        self._now = clock

    def now(self) -> datetime:
        return self._now()

    # --- provisioning tokens ----------------------------------------------------------------------

    async def create_token(self, principal: Principal,
                           command: CreateProvisioningToken) -> tuple[ProvisioningToken, str]:
        """The stored token and its secret (the only time the secret exists outside the caller)."""
        tenant = principal.require_tenant()
        now = self._now()
        expire_time = token_expiry(now, expire_time=command.expire_time, ttl=command.ttl)
        secret = new_token_secret()
        token = ProvisioningToken(
            tenant_id=tenant, id=new_token_id(), secret_hash=self._hash(secret), create_time=now,
            expire_time=expire_time, display_name=command.display_name, max_uses=command.max_uses or 1,
            site_id=command.site_id, template_id=command.template_id, labels=dict(command.labels),
            claim_existing=command.claim_existing)
        validate_token(token)
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            if token.site_id is not None and await uow.sites.get(token.site_id) is None:
                raise InvalidArgument.field("provisioning_token.site", f"site sites/{token.site_id} does not exist")
            if token.template_id is not None and await uow.templates.get(token.template_id) is None:
                raise InvalidArgument.field("provisioning_token.template",
                                            f"template templates/{token.template_id} does not exist")
            await uow.provisioning_tokens.add(token)
            uow.emit(ev.ProvisioningTokenCreated(provisioning_token=token_to_proto(token, now)), subject=token.name)
            await uow.commit()
        return token, secret

    async def get_token(self, principal: Principal, token_id: str) -> ProvisioningToken:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            return _found(await uow.provisioning_tokens.get(token_id), f"provisioningTokens/{token_id}")

    async def list_tokens(self, principal: Principal,
                          params: cmd.ListParams) -> tuple[list[ProvisioningToken], str]:
        tenant = principal.require_tenant()
        page = PROVISIONING_TOKENS.page(self._pages, filter_text=params.filter, order_by=params.order_by,
                                        size=params.page_size, token=params.page_token,
                                        scope=f"provisioningTokens:{tenant}")
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            rows = await uow.provisioning_tokens.list(page)
        return Listing.finish(self._pages, page, rows,
                              lambda t: [getattr(t, term.field) for term in page.order] + [t.id])

    async def revoke_token(self, principal: Principal, token_id: str) -> ProvisioningToken:
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            current = _found(await uow.provisioning_tokens.get(token_id), f"provisioningTokens/{token_id}")
            now = self._now()
            token = current.revoked(now)
            if token is not current:
                await uow.provisioning_tokens.save(token, current.version)
                uow.emit(ev.ProvisioningTokenRevoked(provisioning_token=token_to_proto(token, now)),
                         subject=token.name)
                await uow.commit()
        return token

    # --- self-registration ------------------------------------------------------------------------

    async def register_device(self, command: RegisterDevice) -> Registration:
        validate_registration(command.serial, command.display_name, command.hardware)
        presented = command.provisioning_token.strip()
        if not presented.startswith(TOKEN_PREFIX) or len(presented) > MAX_TOKEN_LENGTH:
            raise _invalid_token()
        async with self._uow(Scope.platform_wide()) as uow:
            found = await uow.provisioning_tokens.tenant_of_hash(self._hash(presented))
        if found is None:
            raise _invalid_token()
        tenant, token_id = found
        now = self._now()
        async with self._uow(Scope.of_tenant(tenant)) as uow:
            token = await uow.provisioning_tokens.get(token_id)
            if token is None:
                raise _invalid_token()
            token.check_open(now)
            existing = await self._device_with_serial(uow, command.serial)
            if existing is not None:
                check_claim(token, existing, bool(await uow.device_secrets.for_device(existing.id)))
            token.check_usable(now)  # fast refusal; the count that decides is `consume` below
            device = existing or await self._create_device(uow, token, command, now)
            plain, secret = issue_secret(tenant, device.id, now, self._hash)
            await uow.device_secrets.add(secret)
            await uow.registrations.add(tenant_id=tenant, device_id=device.id, token_id=token.id,
                                        serial=command.serial, hardware=command.hardware,
                                        claimed=existing is not None, now=now)
            uow.emit(ev.DeviceRegistered(device=device.name, provisioning_token=token.name, serial=command.serial,
                                         hardware=hardware_to_proto(command.hardware), claimed=existing is not None),
                     subject=device.name)
            uow.emit(credentials_changed(device, [secret], revoke_sessions=False), subject=device.name)
            # Count the use last: the row lock it takes serialises every registration on this token,
            # so it is held only from here to the commit.
            if await uow.provisioning_tokens.consume(token.id, now) is None:
                # a concurrent registration took the last use (or it was revoked meanwhile): roll back
                (await uow.provisioning_tokens.get(token.id) or token).check_usable(now)
                raise FailedPrecondition("the provisioning token cannot be used right now: retry",
                                         reason="PROVISIONING_TOKEN_USED_UP")
            await uow.commit()
        return Registration(device=device, device_secret=plain, mqtt=self._mqtt, claimed=existing is not None)

    @staticmethod
    async def _device_with_serial(uow: RegistryUnitOfWork, serial: str) -> Device | None:
        device_id = await uow.registrations.device_with_serial(serial)
        return await uow.devices.get(device_id) if device_id else None

    @staticmethod
    async def _create_device(uow: RegistryUnitOfWork, token: ProvisioningToken, command: RegisterDevice,
                             now: datetime) -> Device:
        """A new device as the token says (site, template, labels), through the same path CreateDevice takes."""
        if token.site_id is not None and await uow.sites.get(token.site_id) is None:
            raise FailedPrecondition(f"the provisioning token's site sites/{token.site_id} no longer exists: ask "
                                     "an operator for a new token", reason="PROVISIONING_TOKEN_SITE_GONE")
        if token.template_id is not None and await uow.templates.get(token.template_id) is None:
            raise FailedPrecondition(f"the provisioning token's template templates/{token.template_id} no longer "
                                     "exists: ask an operator for a new token",
                                     reason="PROVISIONING_TOKEN_TEMPLATE_GONE")
        device = Device(tenant_id=token.tenant_id, id=new_device_id(), create_time=now, update_time=now,
                        display_name=command.display_name or command.serial, site_id=token.site_id,
                        labels=dict(token.labels), serial=command.serial, template_id=token.template_id)
        validate_device(device)
        await insert_device(uow, device, now)
        return device

    # --- secret rotation --------------------------------------------------------------------------

    async def rotate_secret(self, principal: Principal, device_id: str, grace_period: timedelta) -> Rotation:
        validate_grace_period(grace_period)
        async with self._uow(Scope.of_tenant(principal.require_tenant())) as uow:
            device = _found(await uow.devices.get(device_id), f"devices/{device_id}")
            if device.state is DeviceState.RETIRED:
                raise FailedPrecondition(f"device {device.id} is RETIRED: a retired device gets no new secret",
                                         reason="DEVICE_RETIRED")
            now = self._now()
            current = await uow.device_secrets.for_device(device.id, lock=True)
            for secret, until in rotation_expiries(current, now, grace_period):
                await uow.device_secrets.expire(device.id, secret.id, until)
            await uow.device_secrets.prune(device.id, now)
            plain, fresh = issue_secret(device.tenant_id, device.id, now, self._hash)
            await uow.device_secrets.add(fresh)
            remaining = valid_secrets(await uow.device_secrets.for_device(device.id), now)
            uow.emit(credentials_changed(device, remaining, revoke_sessions=grace_period == timedelta(0)),
                     subject=device.name)
            await uow.commit()
        return Rotation(device=device, device_secret=plain, previous_secrets_expire_time=now + grace_period,
                        valid_secret_count=len(remaining))

