"""What ListCommands lets callers filter and sort on."""

from __future__ import annotations

from muster.runtime.filtering import FieldKind, FilterField, FilterSchema
from muster.runtime.listing import Listing
from muster.runtime.pagination import OrderTerm
from services.commands.domain import CommandState

_STATES = {**{s.name: int(s) for s in CommandState}, **{f"COMMAND_STATE_{s.name}": int(s) for s in CommandState}}

COMMANDS = Listing(
    schema=FilterSchema.of(
        FilterField("state", FieldKind.ENUM, enum_values=_STATES),
        FilterField("command", FieldKind.STRING),
        FilterField("creator", FieldKind.STRING),
        FilterField("create_time", FieldKind.TIMESTAMP),
        FilterField("update_time", FieldKind.TIMESTAMP),
        FilterField("finish_time", FieldKind.TIMESTAMP),
    ),
    sortable=("create_time", "update_time", "finish_time", "command"),
    default_order=(OrderTerm("create_time", descending=True),),
)
