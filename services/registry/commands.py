"""What callers ask the registry to do, already translated from protobuf into plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from muster.runtime.auth import Role
from services.registry.domain import DeviceState, Location


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
