"""Templates and sensors between domain objects and protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Struct, Value

from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from services.registry.domain import etag_of
from services.registry.modules import Module
from services.registry.templates import (
    TEMPLATE_ID_PATTERN,
    CommandDefinition,
    DeviceTemplate,
    MetricDefinition,
    MetricType,
    Sensor,
    SlotDefinition,
)


def metric_type(value: int) -> MetricType | None:
    return MetricType(value) if value in MetricType._value2member_map_ else None


def _duration(value: Any) -> Duration:
    d = Duration()
    d.FromTimedelta(value)
    return d


def _struct(value: Any) -> Struct:
    s = Struct()
    s.update(dict(value))
    return s


def template_to_proto(t: DeviceTemplate) -> tpb.DeviceTemplate:
    return tpb.DeviceTemplate(
        name=t.name, display_name=t.display_name, slug=t.slug, category=t.category, manufacturer=t.manufacturer,
        model=t.model, source=tpb.TemplateSource.ValueType(int(t.source)),
        metrics=[tpb.MetricDefinition(key=m.key, unit=m.unit, type=tpb.MetricType.ValueType(int(m.type or 0)),
                                      min=m.min, max=m.max, required=m.required) for m in t.metrics],
        commands=[tpb.CommandDefinition(
            name=c.name, parameters=_struct(c.parameters) if c.parameters else None,
            default_timeout=_duration(c.default_timeout) if c.default_timeout is not None else None)
            for c in t.commands],
        slots=[tpb.SlotDefinition(name=s.name, accepted_templates=[f"templates/{a}" for a in s.accepted_templates],
                                  max_devices=s.max_devices) for s in t.slots],
        create_time=timestamp_of(t.create_time), update_time=timestamp_of(t.update_time), etag=etag_of(t.version))


def metrics_from_proto(items: Iterable[tpb.MetricDefinition]) -> tuple[MetricDefinition, ...]:
    return tuple(MetricDefinition(key=m.key, unit=m.unit, type=metric_type(m.type),
                                  min=m.min if m.HasField("min") else None,
                                  max=m.max if m.HasField("max") else None, required=m.required) for m in items)


def commands_from_proto(items: Iterable[tpb.CommandDefinition]) -> tuple[CommandDefinition, ...]:
    return tuple(CommandDefinition(
        name=c.name, parameters=MessageToDict(c.parameters) if c.HasField("parameters") else {},
        default_timeout=c.default_timeout.ToTimedelta() if c.HasField("default_timeout") else None) for c in items)


def slots_from_proto(items: Iterable[tpb.SlotDefinition], path: str = "template.slots") -> tuple[SlotDefinition, ...]:
    slots = []
    for i, s in enumerate(items):
        accepted = tuple(parse_name(a, "templates", TEMPLATE_ID_PATTERN, field=f"{path}[{i}].accepted_templates[{j}]")
                         for j, a in enumerate(s.accepted_templates))
        slots.append(SlotDefinition(name=s.name, accepted_templates=accepted, max_devices=s.max_devices))
    return tuple(slots)


def template_value(message: tpb.DeviceTemplate, path: str) -> Any:
    """The new value of one update-mask path."""
    if path == "metrics":
        return metrics_from_proto(message.metrics)
    if path == "commands":
        return commands_from_proto(message.commands)
    if path == "slots":
        return slots_from_proto(message.slots)
    return getattr(message, path)


def _value(value: Any) -> Value:
    return ParseDict(value, Value())


def sensor_to_proto(s: Sensor) -> tpb.Sensor:
    return tpb.Sensor(
        name=s.name, type=tpb.MetricType.ValueType(int(s.type or 0)), unit=s.unit, label=s.label, enabled=s.enabled,
        last_value=_value(s.last_value) if s.last_value is not None else None,
        last_seen=timestamp_of(s.last_seen) if s.last_seen is not None else None,
        create_time=timestamp_of(s.create_time), update_time=timestamp_of(s.update_time), etag=etag_of(s.version))


def module_to_proto(m: Module) -> tpb.Module:
    return tpb.Module(name=m.name, slot=m.slot, template=f"templates/{m.template_id}", serial=m.serial,
                      label=m.label, metric_key_map=dict(m.metric_key_map), create_time=timestamp_of(m.create_time),
                      update_time=timestamp_of(m.update_time), etag=etag_of(m.version))
