"""Expansion modules: slot rules (exists, accepts the module's template, not full) table-driven in the
domain, then assignment, key maps, events and isolation through the handlers over the fake."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fakes.registry import FakeClock, FakeRegistryStore, make_module_handlers, make_template_handlers

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, MusterError, NotFound
from services.registry import commands as cmd
from services.registry.handlers import RegistryHandlers
from services.registry.module_handlers import ModuleHandlers
from services.registry.modules import Module, check_slot, validate_module
from services.registry.template_handlers import TemplateHandlers
from services.registry.templates import DeviceTemplate, SlotDefinition

from .registry_handlers_support import ADMIN_A, ADMIN_B, OPERATOR_A, VIEWER_A, make_device, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GATEWAY = DeviceTemplate(tenant_id="", id="gateway", display_name="Gateway", create_time=T0, update_time=T0,
                         slots=(SlotDefinition("io", ("io-4", "io-8"), 2), SlotDefinition("any")))


def _module(**fields: Any) -> Module:
    return Module(**{"tenant_id": "tenant-a", "device_id": "d" * 20, "id": "mod-1", "slot": "io",
                     "template_id": "io-4", "create_time": T0, "update_time": T0, **fields})


@pytest.mark.parametrize(("template", "fields", "occupied", "error", "detail"), [
    (GATEWAY, {}, 0, None, ""),
    (GATEWAY, {}, 1, None, ""),
    (GATEWAY, {"slot": "any", "template_id": "whatever"}, 99, None, ""),  # no list, no limit
    (None, {}, 0, FailedPrecondition, "DEVICE_HAS_NO_TEMPLATE"),
    (GATEWAY, {"slot": "usb"}, 0, InvalidArgument, "module.slot"),
    (GATEWAY, {"template_id": "io-16"}, 0, InvalidArgument, "module.template"),
    (GATEWAY, {}, 2, FailedPrecondition, "SLOT_FULL"),
])
def test_slot_rules(template: DeviceTemplate | None, fields: dict[str, Any], occupied: int,
                    error: type[MusterError] | None, detail: str) -> None:
    if error is None:
        check_slot(template, _module(**fields), occupied)
        return
    with pytest.raises(error) as caught:
        check_slot(template, _module(**fields), occupied)
    found = caught.value.violations[0].field if isinstance(caught.value, InvalidArgument) else caught.value.reason
    assert found == detail


@pytest.mark.parametrize(("fields", "bad_field"), [
    ({"id": "X"}, "module_id"),
    ({"metric_key_map": {"port_3_temp": "Temperature"}}, "module.metric_key_map.port_3_temp"),
    ({"metric_key_map": {"3temp": "temperature"}}, "module.metric_key_map.3temp"),
    ({"label": "a\nb"}, "module.label"),
])
def test_invalid_modules_name_the_field(fields: dict[str, Any], bad_field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_module(_module(**fields))
    assert [v.field for v in caught.value.violations] == [bad_field]


@pytest.fixture
def th(store: FakeRegistryStore, clock: FakeClock) -> TemplateHandlers:
    return make_template_handlers(store, clock)


@pytest.fixture
def mh(store: FakeRegistryStore, clock: FakeClock) -> ModuleHandlers:
    return make_module_handlers(store, clock)


@pytest.fixture
def seeded(store: FakeRegistryStore) -> FakeRegistryStore:
    store.seed_template("gateway", slots=GATEWAY.slots)
    store.seed_template("io-4")
    store.seed_template("io-16")
    return store


def _assign(device_id: str, **fields: Any) -> cmd.CreateModule:
    return cmd.CreateModule(**{"device_id": device_id, "slot": "io", "template_id": "io-4", **fields})


async def test_assign_list_update_remove_a_module(h: RegistryHandlers, mh: ModuleHandlers,
                                                  seeded: FakeRegistryStore) -> None:
    device = await make_device(h, template_id="gateway")
    module = await mh.create_module(OPERATOR_A, _assign(device.id, module_id="left", serial="IO-1",
                                                        metric_key_map={"port_3_temp": "temperature"}))
    assert (module.name, module.tenant_id) == (f"devices/{device.id}/modules/left", device.tenant_id)
    listed, _ = await mh.list_modules(VIEWER_A, device.id, cmd.ListParams(filter='slot = "io"'))
    assert listed == [module]
    values = {"metric_key_map": {"port_3_temp": "temperature", "port_4_hum": "humidity"}}
    changed = await mh.update_module(OPERATOR_A, device.id, cmd.Update("left", frozenset(values), values, '"1"'))
    assert dict(changed.metric_key_map) == values["metric_key_map"] and changed.serial == "IO-1"
    with pytest.raises(Aborted):
        await mh.delete_module(OPERATOR_A, device.id, cmd.Delete("left", '"1"'))
    await mh.delete_module(OPERATOR_A, device.id, cmd.Delete("left"))
    assert seeded.state.modules == {}
    assert [e.type for e in seeded.events][-3:] == ["ModuleAssigned", "ModuleUpdated", "ModuleRemoved"]
    assigned = ev.ModuleAssigned()
    seeded.events[-3].payload.Unpack(assigned)  # ingest learns the key map from the event
    assert dict(assigned.module.metric_key_map) == {"port_3_temp": "temperature"}


async def test_refusals_write_nothing(h: RegistryHandlers, mh: ModuleHandlers, seeded: FakeRegistryStore) -> None:
    device = await make_device(h, template_id="gateway")
    bare = await make_device(h)
    for _ in range(2):
        await mh.create_module(OPERATOR_A, _assign(device.id))
    cases: list[tuple[cmd.CreateModule, type[MusterError]]] = [
        (_assign(device.id), FailedPrecondition),  # io is full
        (_assign(device.id, slot="usb"), InvalidArgument),
        (_assign(device.id, slot="any", template_id="io-16", module_id="x-1"), AlreadyExists),
        (_assign(device.id, template_id="io-16"), InvalidArgument),
        (_assign(device.id, slot="any", template_id="nope"), InvalidArgument),
        (_assign(bare.id), FailedPrecondition),
        (_assign("z" * 20), NotFound),
    ]
    await mh.create_module(OPERATOR_A, _assign(device.id, slot="any", template_id="io-16", module_id="x-1"))
    before = snapshot(seeded), dict(seeded.state.modules)
    for command, error in cases:
        with pytest.raises(error):
            await mh.create_module(OPERATOR_A, command)
    assert (snapshot(seeded), dict(seeded.state.modules)) == before


async def test_modules_are_isolated_and_keep_their_templates_in_use(
        h: RegistryHandlers, mh: ModuleHandlers, th: TemplateHandlers, seeded: FakeRegistryStore) -> None:
    device = await make_device(h, template_id="gateway")
    await mh.create_module(OPERATOR_A, _assign(device.id, module_id="left"))
    with pytest.raises(NotFound):
        await mh.list_modules(ADMIN_B, device.id, cmd.ListParams())
    with pytest.raises(NotFound):
        await mh.delete_module(ADMIN_B, device.id, cmd.Delete("left"))
    own = await th.clone_template(ADMIN_A, cmd.CloneTemplate("io-4"))
    await th.update_template(ADMIN_A, cmd.Update(own.id, frozenset({"slots"}), {"slots": ()}))
    await make_device(h, template_id=own.id)
    gateway_copy = await th.clone_template(ADMIN_A, cmd.CloneTemplate("gateway"))
    host = await make_device(h, template_id=gateway_copy.id)
    await mh.create_module(OPERATOR_A, _assign(host.id, slot="any", template_id=own.id))
    with pytest.raises(FailedPrecondition) as caught:
        await th.delete_template(ADMIN_A, cmd.Delete(own.id))
    assert caught.value.metadata == {"devices": "1", "modules": "1", "template": own.name}
    await h.delete_device(ADMIN_A, cmd.Delete(host.id))
    assert all(m.device_id != host.id for m in seeded.state.modules.values())
