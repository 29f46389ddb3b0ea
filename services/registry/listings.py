"""What each registry collection lets callers filter and sort on."""

from __future__ import annotations

from muster.runtime.filtering import FieldKind, FilterField, FilterSchema
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm
from services.registry.domain import DeviceState

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
        **_TIMES,
    }, map_fields={"labels": "labels"}),
    sortable=("display_name", "serial", "create_time", "update_time"),
    default_order=_BY_CREATE_TIME,
)
