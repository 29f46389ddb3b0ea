"""What callers ask the registry to do, already translated from protobuf into plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from muster.runtime.auth import Role
from services.registry.domain import DeviceState, Location
from services.registry.templates import CommandDefinition, MetricDefinition, MetricType, SlotDefinition
from services.registry.transports import Transport


@dataclass(frozen=True)
class ListParams:
    page_size: int = 0
    page_token: str = ""
    filter: str = ""
    order_by: str = ""


@dataclass(frozen=True)
class CreateTenant:
    tenant_id: str
    display_name: str


@dataclass(frozen=True)
class Update:
    """A field-mask update: `values` holds the new value of every field named in `mask`."""

    id: str
    mask: frozenset[str]
    values: Mapping[str, Any]
    etag: str = ""


@dataclass(frozen=True)
class Delete:
    id: str
    etag: str = ""


@dataclass(frozen=True)
class CreateSite:
    site_id: str
    display_name: str
    address: str = ""
    time_zone: str = ""
    location: Location | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateDevice:
    display_name: str = ""
    site_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    serial: str = ""
    notes: str = ""
    location: Location | None = None
    template_id: str | None = None
    transports: tuple[Transport, ...] = ()


@dataclass(frozen=True)
class ChangeDeviceState:
    device_id: str
    to: DeviceState
    etag: str = ""
    reason: str = ""


@dataclass(frozen=True)
class IssueOperatorToken:
    tenant_id: str | None
    role: Role
    subject: str
    ttl: timedelta | None = None


@dataclass(frozen=True)
class CreateTemplate:
    display_name: str
    template_id: str = ""
    slug: str = ""
    category: str = ""
    manufacturer: str = ""
    model: str = ""
    metrics: tuple[MetricDefinition, ...] = ()
    commands: tuple[CommandDefinition, ...] = ()
    slots: tuple[SlotDefinition, ...] = ()


@dataclass(frozen=True)
class CloneTemplate:
    template_id: str
    display_name: str = ""
    slug: str = ""


@dataclass(frozen=True)
class CreateSensor:
    device_id: str
    key: str
    type: MetricType | None = None  # default: the device template's metric of the same key
    unit: str | None = None  # default: likewise
    label: str = ""
    enabled: bool | None = None  # default: True


@dataclass(frozen=True)
class CreateModule:
    device_id: str
    slot: str
    template_id: str
    module_id: str = ""
    serial: str = ""
    label: str = ""
    metric_key_map: Mapping[str, str] = field(default_factory=dict)
