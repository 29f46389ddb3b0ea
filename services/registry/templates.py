"""Device templates (what a kind of device can do) and sensors (what one device really measures).

No I/O here. A template with `tenant_id == SYSTEM_TENANT` is a system template: owned by the
platform, readable by every tenant, written only by platform admins.
"""

from __future__ import annotations

import enum
import re
import secrets
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from muster.runtime.errors import FieldViolation, InvalidArgument, PermissionDenied
from services.registry.domain import ID_PATTERN, validate_display_name, validate_text

SYSTEM_TENANT = ""
"""tenant_id of system templates (no tenant owns them)."""

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TEMPLATE_ID_PATTERN = ID_PATTERN
MAX_METRICS = 200
MAX_COMMANDS = 100
MAX_SLOTS = 32
MAX_ATTRIBUTE = 200
MAX_UNIT = 32
MAX_TIMEOUT = timedelta(days=1)
MIN_TIMEOUT = timedelta(seconds=1)
_JSON_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})

_ALPHABET = string.ascii_lowercase + string.digits


def new_template_id() -> str:
    return "t" + "".join(secrets.choice(_ALPHABET) for _ in range(15))


class MetricType(enum.IntEnum):
    NUMBER = 1
    BOOL = 2
    STRING = 3


class TemplateSource(enum.IntEnum):
    SYSTEM = 1
    TENANT = 2


@dataclass(frozen=True)
class MetricDefinition:
    key: str
    type: MetricType | None  # None only in a request that left it out (refused by validation)
    unit: str = ""
    min: float | None = None
    max: float | None = None
    required: bool = False


@dataclass(frozen=True)
class CommandDefinition:
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    default_timeout: timedelta | None = None


@dataclass(frozen=True)
class SlotDefinition:
    name: str
    accepted_templates: tuple[str, ...] = ()  # template ids
    max_devices: int = 0  # 0: no limit


@dataclass(frozen=True)
class DeviceTemplate:
    tenant_id: str
    id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    slug: str = ""
    category: str = ""
    manufacturer: str = ""
    model: str = ""
    metrics: tuple[MetricDefinition, ...] = ()
    commands: tuple[CommandDefinition, ...] = ()
    slots: tuple[SlotDefinition, ...] = ()
    version: int = 1

    @property
    def name(self) -> str:
        return f"templates/{self.id}"

    @property
    def is_system(self) -> bool:
        return self.tenant_id == SYSTEM_TENANT

    @property
    def source(self) -> TemplateSource:
        return TemplateSource.SYSTEM if self.is_system else TemplateSource.TENANT

    def required_metrics(self) -> list[MetricDefinition]:
        return [m for m in self.metrics if m.required]

    def metric(self, key: str) -> MetricDefinition | None:
        return next((m for m in self.metrics if m.key == key), None)

    def clone(self, *, tenant_id: str, new_id: str, now: datetime, display_name: str = "",
              slug: str = "") -> DeviceTemplate:
        """A tenant-owned copy: same definitions, new identity, fresh version."""
        return replace(self, tenant_id=tenant_id, id=new_id, display_name=display_name or self.display_name,
                       slug=slug or self.slug, create_time=now, update_time=now, version=1)


def require_writable(template: DeviceTemplate, *, platform_admin: bool) -> None:
    """Tenants cannot change system templates. PERMISSION_DENIED rather than NOT_FOUND: the caller can
    read the template, so pretending it does not exist would be a lie; the message says what to do."""
    if template.is_system and not platform_admin:
        raise PermissionDenied(f"{template.name} is a system template and read-only: clone it "
                               f"(POST /v1/{template.name}:clone) to get a copy your tenant can change",
                               reason="SYSTEM_TEMPLATE_READ_ONLY", metadata={"template": template.name})


@dataclass(frozen=True)
class Sensor:
    tenant_id: str
    device_id: str
    key: str
    type: MetricType | None  # None only in a request that left it out (refused by validation)
    create_time: datetime
    update_time: datetime
    unit: str = ""
    label: str = ""
    enabled: bool = True
    last_value: Any = None  # JSON value; maintained by ingest
    last_seen: datetime | None = None
    version: int = 1

    @property
    def name(self) -> str:
        return f"devices/{self.device_id}/sensors/{self.key}"

    @property
    def id(self) -> str:
        return self.key


@dataclass(frozen=True)
class LastSeen:
    """The newest reading of one sensor (device id + metric key) an event carries."""

    device_id: str
    key: str
    value_json: str  # the JSON text of the google.protobuf.Value
    seen: datetime


def sensor_for(metric: MetricDefinition, *, tenant_id: str, device_id: str, now: datetime) -> Sensor:
    return Sensor(tenant_id=tenant_id, device_id=device_id, key=metric.key, type=metric.type, unit=metric.unit,
                  create_time=now, update_time=now)


def missing_required_sensors(template: DeviceTemplate, existing: Collection[str], *, tenant_id: str,
                             device_id: str, now: datetime) -> list[Sensor]:
    """Sensors for the template's required metrics the device does not have yet (none are removed)."""
    return [sensor_for(m, tenant_id=tenant_id, device_id=device_id, now=now)
            for m in template.required_metrics() if m.key not in existing]


# --- validation ---------------------------------------------------------------------------------

def _identifier(value: str, path: str) -> list[FieldViolation]:
    if not KEY_PATTERN.match(value):
        return [FieldViolation(path, "must be 1-63 of [a-z0-9_], starting with a letter")]
    return []


def _duplicates(names: Sequence[str], path: str, what: str) -> list[FieldViolation]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(FieldViolation(f"{path}[{i}].{what}", f"{name!r} is defined twice"))
        seen.add(name)
    return problems


def _metric(metric: MetricDefinition, path: str) -> list[FieldViolation]:
    problems = _identifier(metric.key, f"{path}.key") + validate_text(metric.unit, f"{path}.unit", MAX_UNIT)
    if metric.type is None:
        problems.append(FieldViolation(f"{path}.type", "is required: NUMBER, BOOL or STRING"))
    bounded = metric.min is not None or metric.max is not None
    if bounded and metric.type is not MetricType.NUMBER:
        problems.append(FieldViolation(f"{path}.min", "min and max apply only to NUMBER metrics"))
    if metric.min is not None and metric.max is not None and metric.min > metric.max:
        problems.append(FieldViolation(f"{path}.max", f"is {metric.max}, below min {metric.min}"))
    return problems


def _parameters(spec: Mapping[str, Any], path: str) -> list[FieldViolation]:
    if not spec:
        return []
    kind = spec.get("type", "object")
    if kind not in _JSON_SCHEMA_TYPES:
        return [FieldViolation(f"{path}.type", f"{kind!r} is not a JSON schema type")]
    properties = spec.get("properties", {})
    if not isinstance(properties, Mapping) or not all(isinstance(p, Mapping) for p in properties.values()):
        return [FieldViolation(f"{path}.properties", "must map parameter names to schemas (objects)")]
    problems = []
    for name, schema in properties.items():
        problems += _parameters(schema, f"{path}.properties.{name}")
    return problems


def _command(command: CommandDefinition, path: str) -> list[FieldViolation]:
    problems = _identifier(command.name, f"{path}.name") + _parameters(command.parameters, f"{path}.parameters")
    timeout = command.default_timeout
    if timeout is not None and not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        problems.append(FieldViolation(f"{path}.default_timeout", "must be between 1 second and 1 day"))
    return problems


def _slot(slot: SlotDefinition, path: str) -> list[FieldViolation]:
    problems = _identifier(slot.name, f"{path}.name")
    if slot.max_devices < 0:
        problems.append(FieldViolation(f"{path}.max_devices", "must be 0 (no limit) or more"))
    for i, accepted in enumerate(slot.accepted_templates):
        if not TEMPLATE_ID_PATTERN.match(accepted):
            problems.append(FieldViolation(f"{path}.accepted_templates[{i}]", f"{accepted!r} is not a template id"))
    return problems


def validate_template(template: DeviceTemplate, path: str = "template") -> None:
    problems = validate_display_name(template.display_name, f"{path}.display_name", required=True)
    if template.slug and not SLUG_PATTERN.match(template.slug):
        problems.append(FieldViolation(f"{path}.slug", "must be 1-63 of [a-z0-9-]"))
    for attr in ("category", "manufacturer", "model"):
        problems += validate_display_name(getattr(template, attr), f"{path}.{attr}", required=False)
    for items, limit, what in ((template.metrics, MAX_METRICS, "metrics"), (template.commands, MAX_COMMANDS,
                                                                            "commands"),
                               (template.slots, MAX_SLOTS, "slots")):
        if len(items) > limit:
            problems.append(FieldViolation(f"{path}.{what}", f"has {len(items)} entries; at most {limit}"))
    for i, metric in enumerate(template.metrics):
        problems += _metric(metric, f"{path}.metrics[{i}]")
    for i, command in enumerate(template.commands):
        problems += _command(command, f"{path}.commands[{i}]")
    for i, slot in enumerate(template.slots):
        problems += _slot(slot, f"{path}.slots[{i}]")
    problems += _duplicates([m.key for m in template.metrics], f"{path}.metrics", "key")
    problems += _duplicates([c.name for c in template.commands], f"{path}.commands", "name")
    problems += _duplicates([s.name for s in template.slots], f"{path}.slots", "name")
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)


def validate_sensor(sensor: Sensor, path: str = "sensor") -> None:
    problems = _identifier(sensor.key, "sensor_id")
    if sensor.type is None:
        problems.append(FieldViolation(f"{path}.type", "is required (NUMBER, BOOL or STRING) unless the device's "
                                                       "template defines the metric"))
    problems += validate_text(sensor.unit, f"{path}.unit", MAX_UNIT)
    problems += validate_display_name(sensor.label, f"{path}.label", required=False)
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)
