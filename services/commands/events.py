"""The commands context's events, emitted through the unit of work (so they commit with the change):
CommandCreated once, CommandStateChanged for every transition. Replies that change nothing emit none."""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message

from muster.commands.v1 import events_pb2 as ev
from muster.events.v1.event_pb2 import Event
from services.commands.domain import Command
from services.commands.mapping import command_to_proto, state_to_proto


class Emitter(Protocol):
    def emit(self, payload: Message, *, subject: str, tenant: str | None = None) -> Event: ...


def emit_created(uow: Emitter, command: Command) -> None:
    uow.emit(ev.CommandCreated(command=command_to_proto(command)), subject=command.name, tenant=command.tenant_id)


def emit_transitions(uow: Emitter, before: Command, after: Command) -> None:
    """One CommandStateChanged per real transition from `before` to `after` (a step may make several,
    e.g. SENT -> PENDING -> SENT when a timer and a resend happen together)."""
    proto = command_to_proto(after)
    for transition in after.history[len(before.history):]:
        if transition.changed and transition.from_state is not None:
            uow.emit(ev.CommandStateChanged(command=proto, previous_state=state_to_proto(transition.from_state),
                                            reason=transition.reason),
                     subject=after.name, tenant=after.tenant_id)
