"""What a device's lifecycle does to its commands: a command only lives while its device can take it.

When the registry deletes a device, or moves it to SUSPENDED or RETIRED, every command of the device
that has not finished is CANCELED at once, with the reason "device deleted" / "device suspended" /
"device retired", its timer cleared and a CommandStateChanged for each. Why cancel, not let them run
out: such a device is refused at connect and kicked (the device edge), so nothing can be delivered and
no reply can come; waiting would only report a misleading TIMED_OUT/EXPIRED later, and a suspension
lifted within the time to live would fire commands queued before it (a reboot, an unlock) that nobody
re-issued. CreateCommand refuses these devices for the same reason, so "a command waits only for a
device that may take it" holds both ways. A reactivated device starts with no queued commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.commands.domain import Command
from services.commands.events import Emitter, emit_transitions

DEVICE_DELETED = "device deleted"
WITHDRAWN_STATES = {3: "device suspended", 4: "device retired"}  # muster.registry.v1.DeviceState


def withdrawal_reason(device_state: int) -> str | None:
    """The cancel reason for a device now in `device_state`, None if its commands may go on."""
    return WITHDRAWN_STATES.get(device_state)


class UnfinishedCommands(Protocol):
    async def unfinished(self, tenant_id: str, device_id: str) -> Sequence[Command]: ...

    async def save(self, command: Command) -> Command: ...


async def withdraw_commands(commands: UnfinishedCommands, events: Emitter, *, tenant_id: str, device_id: str,
                            reason: str, now: datetime) -> list[Command]:
    """Cancel every unfinished command of the device (oldest first) with `reason`; returns them as saved."""
    withdrawn = []
    for before in await commands.unfinished(tenant_id, device_id):
        after = await commands.save(before.withdraw(reason, now))
        emit_transitions(events, before, after)
        withdrawn.append(after)
    return withdrawn
