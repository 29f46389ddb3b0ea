"""Provisioning against the real PostgreSQL, as the registry's own role: a token's last use goes to exactly
one of several concurrent registrations (the row lock, not luck), two concurrent registrations of one
serial create one device, and row-level security keeps tenant A's tokens and secrets from tenant B even
to raw SQL, while a registration (which has no tenant until it finds the token) lands in the token's
tenant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from helpers import unique_id
from sqlalchemy import text

from muster.runtime.auth import Principal, Role
from muster.runtime.db import Database, Scope
from muster.runtime.errors import AlreadyExists, FailedPrecondition, MusterError, NotFound
from muster.runtime.pagination import PageTokens
from muster.runtime.secrets import verify_device_secret
from services.registry import commands as cmd
from services.registry.domain import Tenant
from services.registry.provisioning import SecretHasher
from services.registry.provisioning_handlers import (
    CreateProvisioningToken,
    MqttEndpoint,
    ProvisioningHandlers,
    RegisterDevice,
)

from .registry_db_support import UowFactory
from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

KEY = b"integration-device-secret-key-0123456789"
CONCURRENT = 8


@pytest.fixture
def p(uow: UowFactory) -> ProvisioningHandlers:
    return ProvisioningHandlers(uow, PageTokens(b"integration-page-token-secret-012"), SecretHasher(KEY),
                                MqttEndpoint("127.0.0.1", 1883))


@pytest.fixture
async def tenants(uow: UowFactory) -> tuple[Principal, Principal]:
    a, b = unique_id("prov-a"), unique_id("prov-b")
    now = datetime.now(UTC)
    async with uow(Scope.platform_wide()) as work:
        for tenant in (a, b):
            await work.tenants.add(Tenant(tenant, tenant, now, now))
        await work.commit()
    return Principal("admin-a", Role.ADMIN, a), Principal("admin-b", Role.ADMIN, b)


async def _attempt(p: ProvisioningHandlers, secret: str, serial: str) -> str | MusterError:
    try:
        return (await p.register_device(RegisterDevice(secret, serial))).device.id
    except MusterError as exc:
        return exc


async def test_a_one_use_token_lets_exactly_one_of_concurrent_registrations_through(
        p: ProvisioningHandlers, tenants: tuple[Principal, Principal], db: Database) -> None:
    admin, _ = tenants
    token, secret = await p.create_token(admin, CreateProvisioningToken(max_uses=1))
    results = await asyncio.gather(*(_attempt(p, secret, f"SN-{i}") for i in range(CONCURRENT)))
    won = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(won) == 1, results
    assert all(isinstance(r, FailedPrecondition) and r.reason == "PROVISIONING_TOKEN_USED_UP" for r in refused)
    assert (await p.get_token(admin, token.id)).use_count == 1
    async with db.transaction(Scope.of_tenant(str(admin.tenant))) as conn:
        devices = (await conn.execute(text("SELECT id FROM registry.devices"))).scalars().all()
        secrets = (await conn.execute(text("SELECT device_id FROM registry.device_secrets"))).scalars().all()
    assert devices == won and secrets == won


async def test_concurrent_registrations_of_one_serial_create_one_device(
        p: ProvisioningHandlers, tenants: tuple[Principal, Principal]) -> None:
    admin, _ = tenants
    token, secret = await p.create_token(admin, CreateProvisioningToken(max_uses=CONCURRENT))
    results = await asyncio.gather(*(_attempt(p, secret, "SN-SAME") for _ in range(CONCURRENT)))
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1, results
    assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, str))
    assert (await p.get_token(admin, token.id)).use_count == 1  # the refused ones gave their use back


async def test_registration_lands_in_the_token_tenant_and_tenant_b_sees_none_of_it(
        p: ProvisioningHandlers, tenants: tuple[Principal, Principal], db: Database) -> None:
    admin_a, admin_b = tenants
    token, secret = await p.create_token(admin_a, CreateProvisioningToken(display_name="a's"))
    done = await p.register_device(RegisterDevice(secret, "SN-A"))
    assert done.device.tenant_id == admin_a.tenant
    listed, _ = await p.list_tokens(admin_b, cmd.ListParams())
    assert listed == []
    with pytest.raises(NotFound):
        await p.get_token(admin_b, token.id)
    async with db.transaction(Scope.of_tenant(str(admin_b.tenant))) as conn:
        for table in ("provisioning_tokens", "device_secrets", "device_registrations"):
            assert (await conn.execute(text(f"SELECT count(*) FROM registry.{table}"))).scalar_one() == 0  # noqa: S608
    async with db.transaction(Scope.of_tenant(str(admin_a.tenant))) as conn:
        stored = (await conn.execute(text("SELECT secret_hash FROM registry.device_secrets"))).scalar_one()
        token_hash = (await conn.execute(text("SELECT secret_hash FROM registry.provisioning_tokens"))).scalar_one()
    assert verify_device_secret(KEY, done.device_secret, stored)
    assert verify_device_secret(KEY, secret, token_hash)
    assert done.device_secret not in stored and secret not in token_hash


async def test_tenant_b_cannot_write_a_token_into_tenant_a(
        uow: UowFactory, tenants: tuple[Principal, Principal], db: Database) -> None:
    admin_a, admin_b = tenants
    async with db.transaction(Scope.of_tenant(str(admin_b.tenant))) as conn:
        with pytest.raises(Exception, match="row-level security"):
            await conn.execute(text(
                "INSERT INTO registry.provisioning_tokens (id, tenant_id, secret_hash, max_uses, expire_time, "
                "create_time, version) VALUES ('p000000000000001', :a, 'x', 1, now(), now(), 1)"),
                {"a": admin_a.tenant})
