"""Bulk import/export use cases over the in-memory unit of work: dry runs write nothing, invalid rows
never cost valid ones, batches commit with their events, re-imports are idempotent, export round trips
and stays within the caller's tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.registry import FakeClock, FakeRegistryStore
from fakes.registry_bulk import make_bulk_handlers

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.errors import InvalidArgument
from services.registry.bulk import Outcome
from services.registry.bulk_handlers import BulkHandlers, ImportReport
from services.registry.handlers import RegistryHandlers
from services.registry.templates import MetricDefinition, MetricType

from .registry_handlers_support import ADMIN_B, OPERATOR_A, A, B, make_device, make_site, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

PUMP = (MetricDefinition("pressure", MetricType.NUMBER, "bar", required=True),
        MetricDefinition("flow", MetricType.NUMBER, "l/min", required=True),
        MetricDefinition("temperature", MetricType.NUMBER, "degC"))


@pytest.fixture
def bh(store: FakeRegistryStore, clock: FakeClock) -> BulkHandlers:
    return make_bulk_handlers(store, clock, batch_size=3)


async def _chunks(text: str, size: int = 7) -> AsyncIterator[bytes]:
    data = text.encode()
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def run(bh: BulkHandlers, text: str, *, dry: bool = False, who: Principal = OPERATOR_A) -> ImportReport:
    return await bh.import_devices(who, _chunks(text), validate_only=dry)


async def export(bh: BulkHandlers, who: Principal = OPERATOR_A, filter_text: str = "") -> str:
    return "".join([chunk async for chunk in bh.export_devices(who, filter_text)])


def outcomes(report: ImportReport) -> list[tuple[int, Outcome]]:
    return [(r.row, r.outcome) for r in report.results]


MIXED = ("serial,display_name,site,labels\n"
         "SN-1,pump 1,plant-1,floor=3\n"
         "SN-2,pump 2,no-such-site,\n"
         ",nameless,,\n"
         "SN-4,pump 4,,Bad Key=1\n"
         "SN-5,pump 5,,\n")


async def test_a_dry_run_reports_every_problem_and_writes_nothing(
        bh: BulkHandlers, h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await make_site(h)
    before = snapshot(store)
    report = await run(bh, MIXED, dry=True)
    assert report.validate_only
    assert outcomes(report) == [(2, Outcome.CREATED), (3, Outcome.ERROR), (4, Outcome.ERROR), (5, Outcome.ERROR),
                                (6, Outcome.CREATED)]
    errors = {r.row: [(v.field, v.description) for v in r.errors] for r in report.results if r.errors}
    assert errors[3] == [("site", "site sites/no-such-site does not exist")]
    assert errors[4][0][0] == "serial"
    assert errors[5][0][0] == "labels"
    assert snapshot(store) == before


async def test_invalid_rows_never_cost_valid_rows_in_the_same_batch(
        bh: BulkHandlers, h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await make_site(h)
    report = await run(bh, MIXED)
    assert [r.row for r in report.results if r.outcome is Outcome.CREATED] == [2, 6]
    serials = sorted(d.serial for d in store.state.devices.values())
    assert serials == ["SN-1", "SN-5"]
    created = {r.serial: r.device_id for r in report.results if r.outcome is Outcome.CREATED}
    assert store.state.devices[created["SN-1"]].site_id == "plant-1"
    assert store.state.devices[created["SN-1"]].labels == {"floor": "3"}


async def test_rows_are_written_in_batches_each_with_its_events(
        bh: BulkHandlers, store: FakeRegistryStore) -> None:
    store.seed_template("pump", metrics=PUMP)
    rows = "".join(f"SN-{i},pump\n" for i in range(7))
    commits = store.commits
    report = await run(bh, "serial,template\n" + rows)
    assert [r.outcome for r in report.results] == [Outcome.CREATED] * 7
    assert store.commits - commits == 3  # batches of 3: 3 + 3 + 1
    created = store.events_of_type("DeviceCreated")
    assert len(created) == 7
    sensors = store.events_of_type("SensorAdded")
    assert len(sensors) == 14  # the two required metrics of each device, like CreateDevice
    assert {k for (_, k) in store.state.sensors} == {"pressure", "flow"}


async def test_reimporting_the_same_file_creates_nothing(bh: BulkHandlers, store: FakeRegistryStore) -> None:
    text = "serial,display_name,labels\nSN-1,one,a=1\nSN-2,two,\n"
    await run(bh, text)
    devices, events = dict(store.state.devices), len(store.events)
    again = await run(bh, text)
    assert [r.outcome for r in again.results] == [Outcome.UNCHANGED, Outcome.UNCHANGED]
    assert store.state.devices == devices
    assert len(store.events) == events


async def test_changed_columns_update_and_absent_columns_are_left_alone(
        bh: BulkHandlers, store: FakeRegistryStore) -> None:
    store.seed_template("pump", metrics=PUMP)
    await run(bh, "serial,display_name,notes\nSN-1,one,keep me\n")
    report = await run(bh, "serial,display_name,template\nSN-1,renamed,pump\n")
    assert report.results[0].outcome is Outcome.UPDATED
    device = store.state.devices[report.results[0].device_id]
    assert (device.display_name, device.notes, device.template_id, device.version) == ("renamed", "keep me", "pump", 2)
    updated = store.events_of_type("DeviceUpdated")
    assert len(updated) == 1
    payload = ev.DeviceUpdated()
    updated[0].payload.Unpack(payload)
    assert list(payload.update_mask.paths) == ["display_name", "template"]
    assert len(store.events_of_type("SensorAdded")) == 2  # the new template's required ones


async def test_a_serial_repeated_in_one_file_is_an_error_on_the_later_row(
        bh: BulkHandlers, store: FakeRegistryStore) -> None:
    report = await run(bh, "serial\nSN-1\nSN-2\nSN-1\n")
    assert outcomes(report) == [(2, Outcome.CREATED), (3, Outcome.CREATED), (4, Outcome.ERROR)]
    assert "row 2" in report.results[2].errors[0].description
    assert len(store.state.devices) == 2


async def test_another_tenants_template_is_as_good_as_missing(bh: BulkHandlers, store: FakeRegistryStore) -> None:
    store.seed_template("theirs", tenant_id=B)
    report = await run(bh, "serial,template\nSN-1,theirs\n")
    assert report.results[0].errors[0].field == "template"
    assert store.state.devices == {}


async def test_a_bad_header_is_refused_before_anything_is_written(
        bh: BulkHandlers, store: FakeRegistryStore) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await run(bh, "display_name,colour\nx,red\n")
    assert {v.field for v in caught.value.violations} == {"header"}
    with pytest.raises(InvalidArgument):
        await run(bh, "")
    assert snapshot(store) == before


async def test_export_then_import_is_unchanged_for_every_row(
        bh: BulkHandlers, h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await make_site(h)
    store.seed_template("pump", metrics=PUMP)
    await make_device(h, serial="SN-1", display_name="a, \"quoted\"", site_id="plant-1", labels={"x": "a;b"},
                      template_id="pump", notes="two\nlines")
    await make_device(h, display_name="no serial")
    await run(bh, "serial,latitude,longitude,altitude\nSN-3,52.520008,13.404954,34.5\n")
    text = await export(bh)
    assert text.splitlines()[0] == ("name,serial,display_name,state,site,template,labels,notes,"
                                    "latitude,longitude,altitude")
    report = await run(bh, text)
    assert [r.outcome for r in report.results] == [Outcome.UNCHANGED] * 3
    assert report.results[1].device_id  # the serial-less device, matched by its name


async def test_export_applies_the_filter_and_never_shows_another_tenant(
        bh: BulkHandlers, h: RegistryHandlers) -> None:
    await make_device(h, serial="A-1", labels={"floor": "3"})
    await make_device(h, serial="A-2")
    await make_device(h, ADMIN_B, serial="B-1", labels={"floor": "3"})
    assert [line.split(",")[1] for line in (await export(bh)).splitlines()[1:]] == ["A-1", "A-2"]
    assert [line.split(",")[1] for line in (await export(bh, filter_text='labels.floor = "3"')).splitlines()[1:]] \
        == ["A-1"]
    assert "A-" not in await export(bh, ADMIN_B)
    with pytest.raises(InvalidArgument):
        bh.export_devices(OPERATOR_A, "colour = red")


async def test_export_pages_through_a_fleet_larger_than_one_page(bh: BulkHandlers, store: FakeRegistryStore) -> None:
    await run(bh, "serial\n" + "".join(f"SN-{i:04}\n" for i in range(1203)))
    lines = (await export(bh)).splitlines()
    assert len(lines) == 1204
    assert len({line.split(",")[0] for line in lines[1:]}) == 1203


async def test_a_serial_cannot_be_changed_through_the_name_column(
        bh: BulkHandlers, h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h, serial="SN-1")
    report = await run(bh, f"name,serial\n{device.name},SN-9\n")
    assert report.results[0].errors[0].field == "name"
    assert {d.serial for d in store.state.devices.values() if d.tenant_id == A} == {"SN-1"}
