"""What each registry collection lets callers filter and sort on."""

from __future__ import annotations

from muster.runtime.filtering import FieldKind, FilterField, FilterSchema
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm
from services.registry.domain import DeviceState
from services.registry.templates import MetricType, TemplateSource

_STATES = {**{s.name: int(s) for s in DeviceState}, **{f"DEVICE_STATE_{s.name}": int(s) for s in DeviceState}}
_TIMES = {"create_time": FilterField("create_time", FieldKind.TIMESTAMP),
          "update_time": FilterField("update_time", FieldKind.TIMESTAMP)}
_BY_CREATE_TIME = (OrderTerm("create_time", descending=False),)

TENANTS = Listing(
    schema=FilterSchema(fields={"display_name": FilterField("display_name", FieldKind.STRING), **_TIMES},
                        map_fields={}),
    sortable=("display_name", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)

SITES = Listing(
    schema=FilterSchema(fields={"display_name": FilterField("display_name", FieldKind.STRING),
                                "time_zone": FilterField("time_zone", FieldKind.STRING), **_TIMES},
                        map_fields={"labels": "labels"}),
    sortable=("display_name", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)

DEVICES = Listing(
    schema=FilterSchema(fields={
        "display_name": FilterField("display_name", FieldKind.STRING),
        "serial": FilterField("serial", FieldKind.STRING),
        "site": FilterField("site", FieldKind.STRING, normalize=lambda v: v.removeprefix("sites/")),
        "state": FilterField("state", FieldKind.ENUM, enum_values=_STATES),
        "template": FilterField("template", FieldKind.STRING, normalize=lambda v: v.removeprefix("templates/")),
        **_TIMES,
    }, map_fields={"labels": "labels"}),
    sortable=("display_name", "serial", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)

_SOURCES = {**{s.name: int(s) for s in TemplateSource}, **{f"TEMPLATE_SOURCE_{s.name}": int(s) for s in TemplateSource}}
_TYPES = {**{t.name: int(t) for t in MetricType}, **{f"METRIC_TYPE_{t.name}": int(t) for t in MetricType}}

TEMPLATES = Listing(
    schema=FilterSchema(fields={
        **{f: FilterField(f, FieldKind.STRING) for f in ("display_name", "slug", "category", "manufacturer", "model")},
        "source": FilterField("source", FieldKind.ENUM, enum_values=_SOURCES),
        **_TIMES,
    }, map_fields={}),
    sortable=("display_name", "slug", "category", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)

SENSORS = Listing(
    schema=FilterSchema(fields={
        **{f: FilterField(f, FieldKind.STRING) for f in ("key", "unit", "label")},
        "type": FilterField("type", FieldKind.ENUM, enum_values=_TYPES),
        "enabled": FilterField("enabled", FieldKind.BOOL),
        "create_time": FilterField("create_time", FieldKind.TIMESTAMP),
    }, map_fields={}),
    sortable=("key", "label", "create_time"),
    default_order=(OrderTerm("key", descending=False),),
)

MODULES = Listing(
    schema=FilterSchema(fields={
        **{f: FilterField(f, FieldKind.STRING) for f in ("slot", "serial", "label")},
        "template": FilterField("template", FieldKind.STRING, normalize=lambda v: v.removeprefix("templates/")),
        "create_time": FilterField("create_time", FieldKind.TIMESTAMP),
    }, map_fields={}),
    sortable=("slot", "label", "create_time"),
    default_order=_BY_CREATE_TIME,
)

# groups.GroupType's numbers (groups.py imports this module, so not the enum itself).
_GROUP_TYPE_NUMBERS = {"STATIC": 1, "DYNAMIC": 2}
_GROUP_TYPES = {**_GROUP_TYPE_NUMBERS, **{f"GROUP_TYPE_{k}": v for k, v in _GROUP_TYPE_NUMBERS.items()}}

GROUPS = Listing(
    schema=FilterSchema(fields={
        "display_name": FilterField("display_name", FieldKind.STRING),
        "type": FilterField("type", FieldKind.ENUM, enum_values=_GROUP_TYPES),
        **_TIMES,
    }, map_fields={"labels": "labels"}),
    sortable=("display_name", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)
