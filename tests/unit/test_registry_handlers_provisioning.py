"""Provisioning use cases on the in-memory unit of work: tokens per tenant, a device registering itself
(created from the token, or claiming a pre-created device), refusals with reasons and nothing written,
secret rotation with grace, and the DeviceCredentialsChanged events the device edge consumes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes.registry import DEVICE_SECRET_KEY, MQTT_ENDPOINT, FakeClock, FakeRegistryStore, make_provisioning_handlers

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MusterError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from muster.runtime.secrets import device_secret_hash, verify_device_secret
from services.registry import commands as cmd
from services.registry.handlers import RegistryHandlers
from services.registry.provisioning import HardwareInfo, TokenState
from services.registry.provisioning_handlers import CreateProvisioningToken, ProvisioningHandlers, RegisterDevice

from .registry_handlers_support import ADMIN_A, ADMIN_B, OPERATOR_A, PLATFORM, A, make_device, make_site
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture


@pytest.fixture
def p(store: FakeRegistryStore, clock: FakeClock) -> ProvisioningHandlers:
    return make_provisioning_handlers(store, clock)


async def new_token(p: ProvisioningHandlers, principal: Principal = ADMIN_A, **fields: object) -> str:
    _, secret = await p.create_token(principal, CreateProvisioningToken(**fields))  # type: ignore[arg-type]
    return secret


def credentials_events(store: FakeRegistryStore) -> list[ev.DeviceCredentialsChanged]:
    found = []
    for event in store.events_of_type("DeviceCredentialsChanged"):
        payload = ev.DeviceCredentialsChanged()
        event.payload.Unpack(payload)
        found.append(payload)
    return found


def reason_of(exc: pytest.ExceptionInfo[MusterError]) -> str:
    return exc.value.reason


# --- tokens ------------------------------------------------------------------------------------------

async def test_a_token_is_stored_as_its_hash_and_its_secret_returned_once(p: ProvisioningHandlers,
                                                                           store: FakeRegistryStore) -> None:
    token, secret = await p.create_token(ADMIN_A, CreateProvisioningToken(display_name="batch 7", max_uses=5))
    stored = store.state.provisioning_tokens[token.id]
    assert stored.secret_hash == device_secret_hash(DEVICE_SECRET_KEY, secret)
    assert secret not in repr(stored) and stored.max_uses == 5 and stored.tenant_id == A
    assert [e.type for e in store.events] == ["ProvisioningTokenCreated"]
    assert secret.encode() not in store.events[0].SerializeToString()


async def test_tokens_bind_only_existing_sites_and_templates(p: ProvisioningHandlers, h: RegistryHandlers,
                                                             store: FakeRegistryStore) -> None:
    with pytest.raises(InvalidArgument) as site:
        await new_token(p, site_id="nowhere")
    assert [v.field for v in site.value.violations] == ["provisioning_token.site"]
    with pytest.raises(InvalidArgument) as template:
        await new_token(p, template_id="no-such-template")
    assert [v.field for v in template.value.violations] == ["provisioning_token.template"]
    assert store.state.provisioning_tokens == {}


async def test_tokens_need_a_tenant_principal(p: ProvisioningHandlers) -> None:
    with pytest.raises(PermissionDenied):
        await new_token(p, PLATFORM)


async def test_tenant_b_never_sees_tenant_a_tokens(p: ProvisioningHandlers) -> None:
    token, _ = await p.create_token(ADMIN_A, CreateProvisioningToken())
    await new_token(p, ADMIN_B)
    listed, _ = await p.list_tokens(ADMIN_B, cmd.ListParams())
    assert token.id not in {t.id for t in listed} and len(listed) == 1
    with pytest.raises(NotFound):
        await p.get_token(ADMIN_B, token.id)
    with pytest.raises(NotFound):
        await p.revoke_token(ADMIN_B, token.id)


async def test_listing_pages_through_the_tenant_tokens(p: ProvisioningHandlers) -> None:
    created = [(await p.create_token(ADMIN_A, CreateProvisioningToken(display_name=f"t{i}")))[0] for i in range(5)]
    first, next_token = await p.list_tokens(ADMIN_A, cmd.ListParams(page_size=3))
    rest, last = await p.list_tokens(ADMIN_A, cmd.ListParams(page_size=3, page_token=next_token))
    assert [t.id for t in first + rest] == [t.id for t in created] and last == ""


async def test_revoking_is_idempotent_and_emits_once(p: ProvisioningHandlers, store: FakeRegistryStore) -> None:
    token, _ = await p.create_token(ADMIN_A, CreateProvisioningToken())
    revoked = await p.revoke_token(ADMIN_A, token.id)
    again = await p.revoke_token(ADMIN_A, token.id)
    assert revoked.revoke_time is not None and again.revoke_time == revoked.revoke_time
    assert revoked.state(p.now()) is TokenState.REVOKED
    assert len(store.events_of_type("ProvisioningTokenRevoked")) == 1


# --- registration ------------------------------------------------------------------------------------

async def test_registration_creates_the_device_from_the_token(p: ProvisioningHandlers, h: RegistryHandlers,
                                                             store: FakeRegistryStore) -> None:
    await make_site(h, site_id="plant-1")
    store.seed_template("pump", metrics=())
    secret = await new_token(p, site_id="plant-1", template_id="pump", labels={"batch": "7"})
    done = await p.register_device(RegisterDevice(secret, "SN-1", HardwareInfo(model="P-100", firmware_version="1.2")))
    d = done.device
    assert (d.tenant_id, d.site_id, d.template_id, dict(d.labels), d.serial, d.display_name) == \
        (A, "plant-1", "pump", {"batch": "7"}, "SN-1", "SN-1")
    assert store.state.devices[d.id] == d and not done.claimed
    assert done.mqtt == MQTT_ENDPOINT and done.topic_prefix == f"muster/v1/devices/{d.id}/"
    [stored] = [s for (device_id, _), s in store.state.device_secrets.items() if device_id == d.id]
    assert verify_device_secret(DEVICE_SECRET_KEY, done.device_secret, stored.secret_hash)
    assert store.state.registrations[d.id]["hardware"] == {"model": "P-100", "firmware_version": "1.2"}
    assert [e.type for e in store.events[-3:]] == ["DeviceCreated", "DeviceRegistered", "DeviceCredentialsChanged"]
    [changed] = credentials_events(store)
    assert changed.device == d.name and not changed.revoke_sessions
    assert [s.hmac_sha256 for s in changed.secrets] == [stored.secret_hash]
    assert not changed.secrets[0].HasField("expire_time")
    assert all(e.tenant == A for e in store.events[-3:])


async def test_registration_gives_template_sensors_like_create_device(p: ProvisioningHandlers,
                                                                      store: FakeRegistryStore) -> None:
    from services.registry.templates import MetricDefinition, MetricType

    store.seed_template("meter", metrics=(MetricDefinition("power", MetricType.NUMBER, "W", required=True),))
    done = await p.register_device(RegisterDevice(await new_token(p, template_id="meter"), "SN-2"))
    assert (done.device.id, "power") in store.state.sensors


async def test_a_one_time_token_registers_once_and_the_same_serial_again_is_refused(
        p: ProvisioningHandlers, store: FakeRegistryStore) -> None:
    secret = await new_token(p)
    await p.register_device(RegisterDevice(secret, "SN-1"))
    with pytest.raises(AlreadyExists) as same:
        await p.register_device(RegisterDevice(secret, "SN-1"))
    assert reason_of(same) == "DEVICE_ALREADY_REGISTERED"
    with pytest.raises(FailedPrecondition) as other:
        await p.register_device(RegisterDevice(secret, "SN-2"))
    assert reason_of(other) == "PROVISIONING_TOKEN_USED_UP"
    assert len(store.state.devices) == 1


async def test_a_multi_use_token_counts_each_registration(p: ProvisioningHandlers, store: FakeRegistryStore) -> None:
    token, secret = await p.create_token(ADMIN_A, CreateProvisioningToken(max_uses=2))
    await p.register_device(RegisterDevice(secret, "SN-1"))
    await p.register_device(RegisterDevice(secret, "SN-2"))
    assert store.state.provisioning_tokens[token.id].use_count == 2
    with pytest.raises(FailedPrecondition):
        await p.register_device(RegisterDevice(secret, "SN-3"))


@pytest.mark.parametrize("presented", ["", "mpt_not-a-real-token", "no-prefix", "mpt_" + "x" * 300])
async def test_an_unknown_token_is_unauthenticated_with_one_answer(p: ProvisioningHandlers,
                                                                  presented: str) -> None:
    with pytest.raises(Unauthenticated) as exc:
        await p.register_device(RegisterDevice(presented, "SN-1"))
    assert reason_of(exc) == "PROVISIONING_TOKEN_INVALID"


async def test_expired_and_revoked_tokens_are_refused_with_their_reason(p: ProvisioningHandlers,
                                                                        clock: FakeClock,
                                                                        store: FakeRegistryStore) -> None:
    expiring = await new_token(p, ttl=timedelta(minutes=1))
    revoked_token, revoked = await p.create_token(ADMIN_A, CreateProvisioningToken())
    await p.revoke_token(ADMIN_A, revoked_token.id)
    with pytest.raises(FailedPrecondition) as exc:
        await p.register_device(RegisterDevice(revoked, "SN-1"))
    assert reason_of(exc) == "PROVISIONING_TOKEN_REVOKED"
    clock.now += timedelta(minutes=2)
    with pytest.raises(FailedPrecondition) as exc:
        await p.register_device(RegisterDevice(expiring, "SN-1"))
    assert reason_of(exc) == "PROVISIONING_TOKEN_EXPIRED"
    assert store.state.devices == {} and store.state.device_secrets == {}


async def test_an_existing_serial_is_claimed_only_if_the_token_allows_it(p: ProvisioningHandlers, h: RegistryHandlers,
                                                                         store: FakeRegistryStore) -> None:
    precreated = await make_device(h, serial="SN-9", display_name="pump 9")
    plain = await new_token(p)
    before = len(store.events)
    with pytest.raises(AlreadyExists) as exc:
        await p.register_device(RegisterDevice(plain, "SN-9"))
    assert reason_of(exc) == "SERIAL_EXISTS" and len(store.events) == before
    token, claiming = await p.create_token(ADMIN_A, CreateProvisioningToken(claim_existing=True))
    done = await p.register_device(RegisterDevice(claiming, "SN-9"))
    assert done.claimed and done.device == precreated and len(store.state.devices) == 1
    assert store.state.provisioning_tokens[token.id].use_count == 1
    assert "DeviceCreated" not in [e.type for e in store.events[before:]]


async def test_a_refused_registration_writes_nothing_and_keeps_the_token_unused(
        p: ProvisioningHandlers, h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await make_device(h, serial="SN-9")
    token, secret = await p.create_token(ADMIN_A, CreateProvisioningToken())
    state_before, events_before = store.state.copy(), len(store.events)
    with pytest.raises(AlreadyExists):
        await p.register_device(RegisterDevice(secret, "SN-9"))
    assert store.state == state_before and len(store.events) == events_before
    assert store.state.provisioning_tokens[token.id].use_count == 0


async def test_registration_refuses_bad_input_naming_the_field(p: ProvisioningHandlers) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await p.register_device(RegisterDevice(await new_token(p), "", HardwareInfo(model="\x00")))
    assert {v.field for v in exc.value.violations} == {"serial", "hardware.model"}


async def test_a_token_whose_site_was_deleted_says_so(p: ProvisioningHandlers, h: RegistryHandlers) -> None:
    await make_site(h, site_id="plant-2")
    secret = await new_token(p, site_id="plant-2")
    await h.delete_site(ADMIN_A, cmd.Delete("plant-2"))
    with pytest.raises(FailedPrecondition) as exc:
        await p.register_device(RegisterDevice(secret, "SN-1"))
    assert reason_of(exc) == "PROVISIONING_TOKEN_SITE_GONE"


# --- rotation ----------------------------------------------------------------------------------------

async def registered(p: ProvisioningHandlers) -> tuple[str, str]:
    done = await p.register_device(RegisterDevice(await new_token(p), "SN-R"))
    return done.device.id, done.device_secret


async def test_rotation_without_grace_invalidates_the_old_secret_and_cuts_sessions(
        p: ProvisioningHandlers, store: FakeRegistryStore) -> None:
    device_id, old = await registered(p)
    rotation = await p.rotate_secret(OPERATOR_A, device_id, timedelta(0))
    assert rotation.device_secret != old and rotation.valid_secret_count == 1
    stored = [s for (d, _), s in store.state.device_secrets.items() if d == device_id]
    assert [verify_device_secret(DEVICE_SECRET_KEY, rotation.device_secret, s.secret_hash) for s in stored] == [True]
    last = credentials_events(store)[-1]
    assert last.revoke_sessions and [s.hmac_sha256 for s in last.secrets] == [stored[0].secret_hash]


async def test_rotation_with_grace_keeps_the_old_secret_valid_until_then(p: ProvisioningHandlers,
                                                                         store: FakeRegistryStore) -> None:
    device_id, old = await registered(p)
    rotation = await p.rotate_secret(OPERATOR_A, device_id, timedelta(hours=1))
    assert rotation.valid_secret_count == 2
    last = credentials_events(store)[-1]
    assert not last.revoke_sessions
    old_hash = device_secret_hash(DEVICE_SECRET_KEY, old)
    by_hash = {s.hmac_sha256: s for s in last.secrets}
    assert by_hash[old_hash].expire_time.ToDatetime().isoformat() == \
        rotation.previous_secrets_expire_time.replace(tzinfo=None).isoformat()
    assert not by_hash[device_secret_hash(DEVICE_SECRET_KEY, rotation.device_secret)].HasField("expire_time")


async def test_rotating_again_drops_secrets_past_their_grace(p: ProvisioningHandlers, clock: FakeClock,
                                                             store: FakeRegistryStore) -> None:
    device_id, _ = await registered(p)
    await p.rotate_secret(OPERATOR_A, device_id, timedelta(minutes=5))
    clock.now += timedelta(minutes=10)
    rotation = await p.rotate_secret(OPERATOR_A, device_id, timedelta(minutes=5))
    assert rotation.valid_secret_count == 2  # the previous one (in its grace) and the new one
    assert len([k for k in store.state.device_secrets if k[0] == device_id]) == 2


async def test_rotation_is_refused_for_other_tenants_retired_devices_and_bad_grace(
        p: ProvisioningHandlers, h: RegistryHandlers) -> None:
    device_id, _ = await registered(p)
    with pytest.raises(NotFound):
        await p.rotate_secret(ADMIN_B, device_id, timedelta(0))
    with pytest.raises(InvalidArgument) as bad:
        await p.rotate_secret(OPERATOR_A, device_id, timedelta(days=31))
    assert [v.field for v in bad.value.violations] == ["grace_period"]
    from services.registry.domain import DeviceState

    await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device_id, DeviceState.RETIRED))
    with pytest.raises(FailedPrecondition) as retired:
        await p.rotate_secret(OPERATOR_A, device_id, timedelta(0))
    assert reason_of(retired) == "DEVICE_RETIRED"


async def test_rotation_gives_a_never_registered_device_its_first_secret(p: ProvisioningHandlers,
                                                                         h: RegistryHandlers) -> None:
    device = await make_device(h, serial="SN-M")
    rotation = await p.rotate_secret(OPERATOR_A, device.id, timedelta(0))
    assert rotation.valid_secret_count == 1
    with pytest.raises(AlreadyExists):  # it now has a secret: a token can no longer claim it
        await p.register_device(RegisterDevice(await new_token(p, claim_existing=True), "SN-M"))


async def test_deleting_a_device_drops_its_secrets(p: ProvisioningHandlers, h: RegistryHandlers,
                                                   store: FakeRegistryStore) -> None:
    device_id, _ = await registered(p)
    await h.delete_device(ADMIN_A, cmd.Delete(device_id))
    assert not [k for k in store.state.device_secrets if k[0] == device_id]
    deleted = store.events_of_type("DeviceDeleted")[-1]
    assert deleted.tenant == A and deleted.subject == f"devices/{device_id}"
