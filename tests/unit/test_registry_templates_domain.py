"""Template and sensor rules with no I/O: validation, system templates read-only, cloning, auto sensors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from muster.runtime.errors import InvalidArgument, PermissionDenied
from services.registry.templates import (
    CommandDefinition,
    DeviceTemplate,
    MetricDefinition,
    MetricType,
    Sensor,
    SlotDefinition,
    TemplateSource,
    missing_required_sensors,
    require_writable,
    validate_sensor,
    validate_template,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NUMBER = MetricType.NUMBER


def _template(**fields: Any) -> DeviceTemplate:
    return DeviceTemplate(**{"tenant_id": "tenant-a", "id": "pump-1", "display_name": "Pump", "create_time": T0,
                             "update_time": T0, **fields})


def _fields(caught: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in caught.value.violations}


@pytest.mark.parametrize(("fields", "bad_field"), [
    ({"display_name": ""}, "template.display_name"),
    ({"slug": "Not A Slug"}, "template.slug"),
    ({"category": "a\nb"}, "template.category"),
    ({"metrics": (MetricDefinition("9lives", NUMBER),)}, "template.metrics[0].key"),
    ({"metrics": (MetricDefinition("flow-rate", NUMBER),)}, "template.metrics[0].key"),
    ({"metrics": (MetricDefinition("flow", None),)}, "template.metrics[0].type"),
    ({"metrics": (MetricDefinition("flow", NUMBER, min=10, max=1),)}, "template.metrics[0].max"),
    ({"metrics": (MetricDefinition("on", MetricType.BOOL, min=0),)}, "template.metrics[0].min"),
    ({"metrics": (MetricDefinition("flow", NUMBER), MetricDefinition("flow", NUMBER))}, "template.metrics[1].key"),
    ({"metrics": (MetricDefinition("flow", NUMBER, unit="x" * 33),)}, "template.metrics[0].unit"),
    ({"commands": (CommandDefinition("Reboot"),)}, "template.commands[0].name"),
    ({"commands": (CommandDefinition("reboot"), CommandDefinition("reboot"))}, "template.commands[1].name"),
    ({"commands": (CommandDefinition("reboot", default_timeout=timedelta(0)),)},
     "template.commands[0].default_timeout"),
    ({"commands": (CommandDefinition("set", {"type": "thing"}),)}, "template.commands[0].parameters.type"),
    ({"commands": (CommandDefinition("set", {"type": "object", "properties": {"x": 1}}),)},
     "template.commands[0].parameters.properties"),
    ({"slots": (SlotDefinition("port a"),)}, "template.slots[0].name"),
    ({"slots": (SlotDefinition("port_a", max_devices=-1),)}, "template.slots[0].max_devices"),
    ({"slots": (SlotDefinition("port_a", accepted_templates=("UPPER",)),)}, "template.slots[0].accepted_templates[0]"),
    ({"slots": (SlotDefinition("a"), SlotDefinition("a"))}, "template.slots[1].name"),
])
def test_invalid_templates_name_the_field(fields: dict[str, Any], bad_field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_template(_template(**fields))
    assert bad_field in _fields(caught)


def test_a_full_template_is_valid_and_min_may_equal_max() -> None:
    validate_template(_template(
        slug="grundfos-cr", category="pump", manufacturer="Grundfos", model="CR 5",
        metrics=(MetricDefinition("pressure", NUMBER, "bar", 0.0, 16.0, True), MetricDefinition("level", NUMBER,
                                                                                              min=3, max=3),
                 MetricDefinition("running", MetricType.BOOL), MetricDefinition("mode", MetricType.STRING)),
        commands=(CommandDefinition("set_speed", {"type": "object", "properties": {"rpm": {"type": "number"}}},
                                    timedelta(seconds=30)),),
        slots=(SlotDefinition("expansion", ("io-module",), 2),)))


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_template(_template(display_name="", metrics=(MetricDefinition("Bad", None),)))
    assert _fields(caught) == {"template.display_name", "template.metrics[0].key", "template.metrics[0].type"}


@pytest.mark.parametrize(("tenant", "platform_admin", "allowed"), [
    ("", False, False),  # a tenant never writes a system template
    ("", True, True),  # platform admins manage them
    ("tenant-a", False, True),
])
def test_system_templates_are_read_only_for_tenants(tenant: str, platform_admin: bool, allowed: bool) -> None:
    template = _template(tenant_id=tenant)
    if allowed:
        require_writable(template, platform_admin=platform_admin)
        return
    with pytest.raises(PermissionDenied) as caught:
        require_writable(template, platform_admin=platform_admin)
    assert caught.value.reason == "SYSTEM_TEMPLATE_READ_ONLY" and ":clone" in caught.value.message


def test_source_follows_the_owner() -> None:
    assert _template(tenant_id="").source is TemplateSource.SYSTEM
    assert _template().source is TemplateSource.TENANT


def test_a_clone_is_a_fresh_tenant_copy_with_the_same_definitions() -> None:
    metrics = (MetricDefinition("flow", NUMBER, required=True),)
    system = _template(tenant_id="", version=7, slug="pump", metrics=metrics)
    later = T0 + timedelta(days=1)
    copy = system.clone(tenant_id="tenant-b", new_id="tcopy", now=later, display_name="My pump")
    assert (copy.tenant_id, copy.id, copy.display_name, copy.slug, copy.version) == ("tenant-b", "tcopy", "My pump",
                                                                                     "pump", 1)
    assert copy.metrics == metrics and copy.create_time == later and copy.source is TemplateSource.TENANT
    assert system.clone(tenant_id="tenant-b", new_id="x", now=later).display_name == "Pump"


@pytest.mark.parametrize(("existing", "expected"), [
    (set(), ["flow", "pressure"]),
    ({"flow"}, ["pressure"]),
    ({"flow", "pressure", "extra"}, []),
])
def test_missing_required_sensors_adds_only_what_is_missing(existing: set[str], expected: list[str]) -> None:
    template = _template(metrics=(MetricDefinition("flow", NUMBER, "l/min", required=True),
                                  MetricDefinition("temp", NUMBER),
                                  MetricDefinition("pressure", NUMBER, "bar", required=True)))
    added = missing_required_sensors(template, existing, tenant_id="tenant-a", device_id="d" * 20, now=T0)
    assert [s.key for s in added] == expected
    assert all(s.enabled and s.tenant_id == "tenant-a" and s.type is NUMBER for s in added)
    assert [s.unit for s in added] == [{"flow": "l/min", "pressure": "bar"}[k] for k in expected]


@pytest.mark.parametrize(("fields", "bad_field"), [
    ({"key": "Bad-Key"}, "sensor_id"),
    ({"type": None}, "sensor.type"),
    ({"unit": "u" * 40}, "sensor.unit"),
    ({"label": "two\nlines"}, "sensor.label"),
])
def test_invalid_sensors_name_the_field(fields: dict[str, Any], bad_field: str) -> None:
    sensor = Sensor(**{"tenant_id": "tenant-a", "device_id": "d" * 20, "key": "flow", "type": NUMBER,
                       "create_time": T0, "update_time": T0, **fields})
    with pytest.raises(InvalidArgument) as caught:
        validate_sensor(sensor)
    assert _fields(caught) == {bad_field}
