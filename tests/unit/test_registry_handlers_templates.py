"""Template and sensor use cases over the in-memory unit of work: visibility of system templates,
cloning, delete-in-use, auto sensors on device create/update, sensor CRUD, events, no partial writes."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.registry import FakeClock, FakeRegistryStore, make_template_handlers

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from muster.runtime.fieldmask import validate_update_mask
from services.registry import commands as cmd
from services.registry.handlers import RegistryHandlers
from services.registry.template_handlers import TemplateHandlers
from services.registry.templates import SYSTEM_TENANT, MetricDefinition, MetricType, TemplateSource

from .registry_handlers_support import ADMIN_A, ADMIN_B, OPERATOR_A, PLATFORM, VIEWER_A, A, make_device, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

NUMBER = MetricType.NUMBER
PUMP_METRICS = (MetricDefinition("pressure", NUMBER, "bar", 0, 16, required=True),
                MetricDefinition("flow", NUMBER, "l/min", required=True),
                MetricDefinition("temperature", NUMBER, "degC"))


@pytest.fixture
def th(store: FakeRegistryStore, clock: FakeClock) -> TemplateHandlers:
    return make_template_handlers(store, clock)


def _create(**fields: Any) -> cmd.CreateTemplate:
    return cmd.CreateTemplate(**{"display_name": "Pump", "category": "pump", "metrics": PUMP_METRICS, **fields})


def _update(template_id: str, values: dict[str, Any], etag: str = "") -> cmd.Update:
    return cmd.Update(id=template_id, mask=frozenset(values), values=values, etag=etag)


# --- who owns and sees what --------------------------------------------------------------------------

async def test_a_tenant_creates_tenant_templates_and_a_platform_admin_system_ones(th: TemplateHandlers,
                                                                                   store: FakeRegistryStore) -> None:
    mine = await th.create_template(ADMIN_A, _create())
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    assert (mine.tenant_id, mine.source) == (A, TemplateSource.TENANT)
    assert (system.tenant_id, system.id, system.source) == (SYSTEM_TENANT, "generic-pump", TemplateSource.SYSTEM)
    assert [e.type for e in store.events] == ["TemplateCreated", "TemplateCreated"]


async def test_only_platform_admins_choose_template_ids(th: TemplateHandlers) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await th.create_template(ADMIN_A, _create(template_id="my-pump"))
    assert caught.value.violations[0].field == "template_id"
    with pytest.raises(AlreadyExists):
        for _ in range(2):
            await th.create_template(PLATFORM, _create(template_id="dup-pump"))


async def test_system_templates_are_visible_to_every_tenant_and_tenant_ones_only_to_their_owner(
        th: TemplateHandlers) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    a = await th.create_template(ADMIN_A, _create(display_name="A pump"))
    b = await th.create_template(ADMIN_B, _create(display_name="B pump"))
    seen_a, _ = await th.list_templates(VIEWER_A, cmd.ListParams())
    seen_b, _ = await th.list_templates(ADMIN_B, cmd.ListParams())
    seen_platform, _ = await th.list_templates(PLATFORM, cmd.ListParams())
    assert {t.id for t in seen_a} == {system.id, a.id}
    assert {t.id for t in seen_b} == {system.id, b.id}
    assert {t.id for t in seen_platform} == {system.id}  # platform admins manage the system templates only
    assert (await th.get_template(VIEWER_A, system.id)) == system
    for principal, template_id in ((ADMIN_A, b.id), (ADMIN_B, a.id), (PLATFORM, a.id)):
        with pytest.raises(NotFound):
            await th.get_template(principal, template_id)


@pytest.mark.parametrize("write", ["update", "delete"])
async def test_tenants_cannot_write_system_templates(th: TemplateHandlers, store: FakeRegistryStore,
                                                     write: str) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    before = snapshot(store), dict(store.state.templates)
    with pytest.raises(PermissionDenied) as caught:
        if write == "update":
            await th.update_template(ADMIN_A, _update(system.id, {"display_name": "Mine now"}))
        else:
            await th.delete_template(ADMIN_A, cmd.Delete(system.id))
    assert caught.value.reason == "SYSTEM_TEMPLATE_READ_ONLY"
    assert (snapshot(store), dict(store.state.templates)) == before


async def test_platform_admins_update_and_delete_system_templates(th: TemplateHandlers,
                                                                  store: FakeRegistryStore) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    updated = await th.update_template(PLATFORM, _update(system.id, {"model": "CR 10"}, etag='"1"'))
    assert (updated.model, updated.version, updated.display_name) == ("CR 10", 2, "Pump")
    await th.delete_template(PLATFORM, cmd.Delete(system.id, '"2"'))
    assert system.id not in store.state.templates
    assert [e.type for e in store.events][-2:] == ["TemplateUpdated", "TemplateDeleted"]


# --- update, etag, filter -----------------------------------------------------------------------------

async def test_update_checks_the_etag_and_validates_the_result(th: TemplateHandlers) -> None:
    mine = await th.create_template(ADMIN_A, _create())
    with pytest.raises(Aborted):
        await th.update_template(ADMIN_A, _update(mine.id, {"model": "x"}, etag='"7"'))
    with pytest.raises(InvalidArgument) as caught:
        await th.update_template(ADMIN_A, _update(mine.id, {"metrics": PUMP_METRICS + PUMP_METRICS[:1]}))
    assert caught.value.violations[0].field == "template.metrics[3].key"


async def test_list_filters_by_category_source_and_name_prefix(th: TemplateHandlers) -> None:
    await th.create_template(PLATFORM, _create(template_id="generic-pump", display_name="Generic pump"))
    valve = await th.create_template(ADMIN_A, _create(display_name="Valve", category="valve"))
    pump = await th.create_template(ADMIN_A, _create(display_name="Grundfos CR"))

    async def ids(filter_text: str) -> list[str]:
        return [t.id for t in (await th.list_templates(VIEWER_A, cmd.ListParams(filter=filter_text)))[0]]

    assert await ids('category = "valve"') == [valve.id]
    assert await ids('category = "pump" AND source = TENANT') == [pump.id]
    assert await ids("source = SYSTEM") == ["generic-pump"]
    assert await ids('display_name = "Gr*"') == [pump.id]


async def test_list_pages_through_templates(th: TemplateHandlers) -> None:
    made = [await th.create_template(ADMIN_A, _create(display_name=f"T{i}")) for i in range(5)]
    page, token = await th.list_templates(VIEWER_A, cmd.ListParams(page_size=2))
    seen = list(page)
    while token:
        page, token = await th.list_templates(VIEWER_A, cmd.ListParams(page_size=2, page_token=token))
        seen += page
    assert [t.id for t in seen] == [t.id for t in made]


# --- clone --------------------------------------------------------------------------------------------

async def test_clone_copies_a_system_template_into_the_callers_tenant(th: TemplateHandlers,
                                                                      store: FakeRegistryStore) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump", slug="pump"))
    copy = await th.clone_template(ADMIN_A, cmd.CloneTemplate(system.id, display_name="Our pump"))
    assert (copy.tenant_id, copy.source, copy.display_name, copy.slug) == (A, TemplateSource.TENANT, "Our pump",
                                                                           "pump")
    assert copy.id != system.id and copy.metrics == system.metrics
    again = await th.clone_template(ADMIN_A, cmd.CloneTemplate(copy.id))  # a tenant's own template clones too
    assert again.display_name == "Our pump"
    changed = await th.update_template(ADMIN_A, _update(copy.id, {"model": "ours"}))
    assert changed.model == "ours" and store.state.templates[system.id].model == ""


async def test_clone_refuses_other_tenants_templates_and_tenantless_callers(th: TemplateHandlers) -> None:
    b = await th.create_template(ADMIN_B, _create())
    with pytest.raises(NotFound):
        await th.clone_template(ADMIN_A, cmd.CloneTemplate(b.id))
    with pytest.raises(PermissionDenied):
        await th.clone_template(PLATFORM, cmd.CloneTemplate(b.id))


# --- devices and their sensors ------------------------------------------------------------------------

async def test_a_device_created_with_a_template_gets_a_sensor_per_required_metric(
        h: RegistryHandlers, th: TemplateHandlers, store: FakeRegistryStore) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    device = await make_device(h, template_id=system.id)
    sensors, _ = await th.list_sensors(VIEWER_A, device.id, cmd.ListParams())
    assert [(s.key, s.unit, s.type, s.enabled) for s in sensors] == [("flow", "l/min", NUMBER, True),
                                                                     ("pressure", "bar", NUMBER, True)]
    assert device.template_id == system.id
    assert [e.type for e in store.events][-3:] == ["DeviceCreated", "SensorAdded", "SensorAdded"]


async def test_a_device_cannot_use_a_template_it_cannot_see(h: RegistryHandlers, th: TemplateHandlers,
                                                            store: FakeRegistryStore) -> None:
    b = await th.create_template(ADMIN_B, _create())
    before = snapshot(store)
    for template_id in (b.id, "no-such-template"):
        with pytest.raises(InvalidArgument) as caught:
            await make_device(h, template_id=template_id)
        assert caught.value.violations[0].field == "device.template"
    assert snapshot(store) == before


async def test_changing_the_template_adds_missing_required_sensors_and_deletes_none(
        h: RegistryHandlers, th: TemplateHandlers) -> None:
    first = await th.create_template(ADMIN_A, _create())
    second = await th.create_template(ADMIN_A, _create(metrics=(
        MetricDefinition("flow", NUMBER, "m3/h", required=True), MetricDefinition("rpm", NUMBER, required=True))))
    device = await make_device(h, template_id=first.id)
    await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, "vibration", NUMBER))
    values = {"template": second.id}
    updated = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset(values), values))
    sensors, _ = await th.list_sensors(VIEWER_A, device.id, cmd.ListParams())
    assert updated.template_id == second.id
    assert {s.key: s.unit for s in sensors} == {"flow": "l/min", "pressure": "bar", "vibration": "", "rpm": ""}
    cleared = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset(values), {"template": None}))
    assert cleared.template_id is None
    assert len((await th.list_sensors(VIEWER_A, device.id, cmd.ListParams()))[0]) == 4


async def test_deleting_a_template_in_use_is_refused_naming_how_many_devices(
        h: RegistryHandlers, th: TemplateHandlers) -> None:
    mine = await th.create_template(ADMIN_A, _create())
    for _ in range(2):
        await make_device(h, template_id=mine.id)
    with pytest.raises(FailedPrecondition) as caught:
        await th.delete_template(ADMIN_A, cmd.Delete(mine.id))
    assert caught.value.reason == "TEMPLATE_IN_USE" and caught.value.metadata["devices"] == "2"
    assert "2 device(s)" in caught.value.message


async def test_a_system_template_in_use_by_any_tenant_cannot_be_deleted(h: RegistryHandlers,
                                                                        th: TemplateHandlers) -> None:
    system = await th.create_template(PLATFORM, _create(template_id="generic-pump"))
    await make_device(h, template_id=system.id)
    await h.create_device(ADMIN_B, cmd.CreateDevice(template_id=system.id))
    with pytest.raises(FailedPrecondition) as caught:
        await th.delete_template(PLATFORM, cmd.Delete(system.id))
    assert caught.value.metadata["devices"] == "2"


async def test_sensor_crud_with_defaults_from_the_template(h: RegistryHandlers, th: TemplateHandlers,
                                                           store: FakeRegistryStore) -> None:
    mine = await th.create_template(ADMIN_A, _create())
    device = await make_device(h, template_id=mine.id)
    temp = await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, "temperature", label="Water"))
    assert (temp.type, temp.unit, temp.label, temp.enabled) == (NUMBER, "degC", "Water", True)
    with pytest.raises(AlreadyExists):
        await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, "temperature"))
    with pytest.raises(InvalidArgument) as caught:
        await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, "humidity"))  # not in the template
    assert caught.value.violations[0].field == "sensor.type"
    mask = validate_update_mask(["enabled", "unit"], ("unit", "label", "enabled"))
    changed = await th.update_sensor(OPERATOR_A, device.id, cmd.Update(
        "temperature", mask, {"enabled": False, "unit": "degF"}, etag='"1"'))
    assert (changed.enabled, changed.unit, changed.label, changed.version) == (False, "degF", "Water", 2)
    with pytest.raises(Aborted):
        await th.delete_sensor(OPERATOR_A, device.id, cmd.Delete("temperature", '"1"'))
    await th.delete_sensor(OPERATOR_A, device.id, cmd.Delete("temperature", '"2"'))
    with pytest.raises(NotFound):
        await th.delete_sensor(OPERATOR_A, device.id, cmd.Delete("temperature"))
    types = [e.type for e in store.events if e.type.startswith("Sensor")]
    assert types[-3:] == ["SensorAdded", "SensorUpdated", "SensorRemoved"]
    removed = ev.SensorRemoved()
    store.events[-1].payload.Unpack(removed)
    assert removed.name == f"devices/{device.id}/sensors/temperature"


async def test_sensors_of_another_tenants_device_are_not_found(h: RegistryHandlers, th: TemplateHandlers) -> None:
    device = await make_device(h)
    await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, "flow", NUMBER))
    with pytest.raises(NotFound):
        await th.list_sensors(ADMIN_B, device.id, cmd.ListParams())
    with pytest.raises(NotFound):
        await th.create_sensor(ADMIN_B, cmd.CreateSensor(device.id, "rpm", NUMBER))
    with pytest.raises(NotFound):
        await th.update_sensor(ADMIN_B, device.id, cmd.Update("flow", frozenset({"label"}), {"label": "x"}))
    with pytest.raises(NotFound):
        await th.delete_sensor(ADMIN_B, device.id, cmd.Delete("flow"))


async def test_sensor_list_filters_and_deleting_the_device_drops_its_sensors(
        h: RegistryHandlers, th: TemplateHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h)
    for key, kind in (("flow", NUMBER), ("running", MetricType.BOOL), ("mode", MetricType.STRING)):
        await th.create_sensor(OPERATOR_A, cmd.CreateSensor(device.id, key, kind, enabled=key != "mode"))
    found, _ = await th.list_sensors(VIEWER_A, device.id, cmd.ListParams(filter="enabled = true AND type != BOOL"))
    assert [s.key for s in found] == ["flow"]
    await h.delete_device(ADMIN_A, cmd.Delete(device.id))
    assert store.state.sensors == {}
