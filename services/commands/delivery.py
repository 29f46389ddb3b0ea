"""Delivery decisions, pure: what happens to a command whose timer is due, given whether its device is
online, and the message a device gets.

The commands' state machine (`domain.Command`) knows the timers; this module adds the device's
presence: a command that is ready to be sent goes out only while the device is online, otherwise it
waits (PENDING) until its time to live passes or the device comes online. A command is published
only after its SENT transition is committed: a crash in between is covered by the acknowledgement
timeout, which sends it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from services.commands.domain import Command

MAX_TIMERS_PER_STEP = 16
"""Timers one step applies at most (a command whose service was down for long may owe several: an
acknowledgement timeout, then the retry pause, ...); the rest wait for the next pass."""


@dataclass(frozen=True)
class Step:
    """A command after its due timers (and possibly a send), and when to look at it again."""

    command: Command
    send: bool  # publish it to the device once this step is committed
    due_at: datetime | None  # None: no timer left (terminal)


def due_at(command: Command) -> datetime | None:
    deadline = command.next_deadline()
    return deadline.at if deadline is not None else None


def advance(command: Command, *, online: bool, now: datetime) -> Step:
    """Fire every timer of `command` due by `now`, then send it if it is ready and the device online."""
    for _ in range(MAX_TIMERS_PER_STEP):
        deadline = command.next_deadline()
        if deadline is None or deadline.at > now:
            break
        command = command.fire_timer(now)
    if online and command.ready_to_send(now):
        sent = command.mark_sent(now)
        return Step(sent, True, due_at(sent))
    return Step(command, False, due_at(command))


def command_payload(command: Command) -> bytes:
    """What the device gets on `commands/{command_id}`. The id is in the body too: the same command
    may arrive more than once (a resend after a lost acknowledgement), and the device de-duplicates
    by it."""
    return orjson.dumps({"id": command.id, "name": command.command, "params": dict(command.parameters),
                         "expires_at": command.expire_time.isoformat().replace("+00:00", "Z")})


def command_levels(command: Command) -> str:
    """The topic levels under the device's prefix: `commands/{command_id}`."""
    return f"commands/{command.id}"
