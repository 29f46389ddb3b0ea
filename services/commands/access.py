"""Minimum role per commands RPC. Anything not listed is refused (deny by default)."""

from __future__ import annotations

from muster.runtime.auth import Role

_COMMANDS = "/muster.commands.v1.CommandService/"

ACCESS_POLICY: dict[str, Role | None] = {
    # Commands act on devices: operators send and cancel them, as they operate devices in the registry.
    _COMMANDS + "CreateCommand": Role.OPERATOR,
    _COMMANDS + "CancelCommand": Role.OPERATOR,
    _COMMANDS + "GetCommand": Role.VIEWER,
    _COMMANDS + "ListCommands": Role.VIEWER,
    _COMMANDS + "WaitCommand": Role.VIEWER,
}
