"""The in-memory registry's rows and the pieces every fake repository shares: row-level security
like PostgreSQL's, optimistic concurrency errors, and filtering/ordering like `repository._page`."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from muster.runtime.db import Scope
from muster.runtime.errors import Aborted
from muster.runtime.filtering import matches
from muster.runtime.listing import Page
from muster.runtime.pagination import compare_keysets
from services.registry.domain import Device, Site, Tenant, etag_of
from services.registry.groups import Group
from services.registry.modules import Module
from services.registry.provisioning import DeviceSecret, ProvisioningToken
from services.registry.templates import DeviceTemplate, Sensor

T = TypeVar("T", Tenant, Site, Device, DeviceTemplate, Sensor, Module, ProvisioningToken, Group)

# Filter column -> domain attribute, where they differ (the SQL repositories' column maps).
_RECORD_ATTRS = {"site": "site_id"}
# order_by field -> domain attribute (as the handlers build keysets).
_KEY_ATTRS = {"site": "site_id", "template": "template_id"}


class RowLevelSecurityViolation(Exception):
    """What PostgreSQL raises when a row fails the policy's WITH CHECK (a handler bug if ever seen)."""


@dataclass
class RegistryState:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    sites: dict[tuple[str, str], Site] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    templates: dict[str, DeviceTemplate] = field(default_factory=dict)
    sensors: dict[tuple[str, str], Sensor] = field(default_factory=dict)
    modules: dict[tuple[str, str], Module] = field(default_factory=dict)
    provisioning_tokens: dict[str, ProvisioningToken] = field(default_factory=dict)
    device_secrets: dict[tuple[str, str], DeviceSecret] = field(default_factory=dict)  # (device id, secret id)
    registrations: dict[str, dict[str, Any]] = field(default_factory=dict)  # device id -> row
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)  # (tenant, group id)
    group_members: dict[tuple[str, str, str], datetime] = field(default_factory=dict)  # (tenant, group, device)

    def copy(self) -> RegistryState:
        # Domain objects are frozen dataclasses (registration rows are never changed in place):
        # copying every dict is a full snapshot.
        return RegistryState(**{f.name: dict(getattr(self, f.name)) for f in fields(self)})


def stale(name: str, version: int) -> Aborted:
    return Aborted(f"{name} was changed concurrently (expected etag {etag_of(version)})", reason="ETAG_MISMATCH")


def record(item: Tenant | Site | Device | DeviceTemplate | Sensor | Module | ProvisioningToken | Group,
           ) -> dict[str, Any]:
    """The row as the filter sees it: filter column key -> value (enums as stored ints)."""
    if isinstance(item, Group):
        return {"display_name": item.display_name, "type": int(item.type), "labels": dict(item.labels),
                "create_time": item.create_time, "update_time": item.update_time}
    if isinstance(item, ProvisioningToken):
        return {"display_name": item.display_name, "site": item.site_id, "template": item.template_id,
                "labels": dict(item.labels), "create_time": item.create_time, "expire_time": item.expire_time}
    if isinstance(item, Module):
        return {"slot": item.slot, "template": item.template_id, "serial": item.serial, "label": item.label,
                "create_time": item.create_time}
    if isinstance(item, Sensor):
        return {"key": item.key, "unit": item.unit, "label": item.label, "type": int(item.type or 0),
                "enabled": item.enabled, "create_time": item.create_time}
    record: dict[str, Any] = {"display_name": item.display_name, "create_time": item.create_time,
                              "update_time": item.update_time}
    if isinstance(item, DeviceTemplate):
        record.update(slug=item.slug, category=item.category, manufacturer=item.manufacturer, model=item.model,
                      source=int(item.source))
    if isinstance(item, Site):
        record.update(time_zone=item.time_zone, labels=dict(item.labels))
    if isinstance(item, Device):
        record.update(serial=item.serial, site=item.site_id, state=int(item.state), labels=dict(item.labels),
                      template=item.template_id)
    return record


def paged(items: list[T], query: Page) -> list[T]:
    """Filter, order and cut like `repository._page`: rows after `query.after`, `query.fetch` of them."""

    def key(item: T) -> list[Any]:
        return [getattr(item, _KEY_ATTRS.get(t.field, t.field)) for t in query.order] + [item.id]

    def cmp(a: T, b: T) -> int:
        return compare_keysets(query.order, key(a), key(b))

    chosen = [item for item in items if matches(query.filter, record(item))]
    if query.after is not None:
        after = list(query.after)
        chosen = [item for item in chosen if compare_keysets(query.order, key(item), after) > 0]
    chosen.sort(key=functools.cmp_to_key(cmp))
    return chosen[: query.fetch]


class Repository:
    def __init__(self, state: RegistryState, scope: Scope) -> None:
        self._state = state
        self._scope = scope

    def _visible(self, tenant_id: str) -> bool:
        return self._scope.platform or tenant_id == self._scope.tenant

    def _check(self, tenant_id: str) -> None:
        if not self._visible(tenant_id):
            raise RowLevelSecurityViolation(
                f"new row violates row-level security policy (tenant {tenant_id!r}, scope {self._scope})")
