"""The commands gRPC edge: proto in, plain values to a handler, proto out. No rules live here."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as pb
from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.runtime.names import parse_name
from services.commands.creation import CreateCommand
from services.commands.handlers import CommandHandlers
from services.commands.mapping import command_to_proto

Context = grpc.aio.ServicerContext[Any, Any]

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COMMAND_ID = re.compile(r"^[0-9a-f]{32}$")
ALL_DEVICES = "-"
DEFAULT_WAIT = timedelta(seconds=20)
DEADLINE_MARGIN = 0.5  # seconds kept to answer before the caller's deadline


def device_of(parent: str, *, field: str = "parent", wildcard: bool = False) -> str | None:
    """`devices/{device}` -> the id; `devices/-` -> None when `wildcard` is allowed."""
    if wildcard and parent == f"devices/{ALL_DEVICES}":
        return None
    return parse_name(parent, "devices", DEVICE_ID, field=field)


def command_of(name: str, *, field: str = "name") -> tuple[str, str]:
    """`devices/{device}/commands/{command}` -> (device id, command id)."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "devices" or parts[2] != "commands":
        raise InvalidArgument.field(field, f"{name!r} is not of the form devices/{{device}}/commands/{{command}}"
                                    if name else "is required, in the form devices/{device}/commands/{command}")
    if not DEVICE_ID.match(parts[1]):
        raise InvalidArgument.field(field, f"{parts[1]!r} is not a valid device id")
    if not COMMAND_ID.match(parts[3]):
        raise InvalidArgument.field(field, f"{parts[3]!r} is not a valid command id")
    return parts[1], parts[3]


def _duration(message: Any, field: str) -> timedelta | None:
    if not message.HasField(field):
        return None
    return getattr(message, field).ToTimedelta()  # type: ignore[no-any-return]


def create_request(request: svc.CreateCommandRequest) -> CreateCommand:
    device_id = device_of(request.parent)
    assert device_id is not None
    c, retry = request.command, request.command.retry_policy
    return CreateCommand(
        device_id=device_id, command=c.command, parameters=MessageToDict(c.parameters),
        request_id=request.request_id, ttl=_duration(c, "ttl"), delivery_timeout=_duration(c, "delivery_timeout"),
        execution_timeout=_duration(c, "execution_timeout"), max_attempts=retry.max_attempts or None,
        initial_backoff=_duration(retry, "initial_backoff"), multiplier=retry.multiplier or None,
        max_backoff=_duration(retry, "max_backoff"))


def wait_timeout(request: svc.WaitCommandRequest, time_remaining: float | None) -> timedelta:
    """The request's timeout (must be positive), else 20 s; never past the caller's deadline."""
    wanted = _duration(request, "timeout")
    if wanted is not None and wanted <= timedelta(0):
        raise InvalidArgument.field("timeout", "must be positive (or unset for the default)")
    chosen = wanted or DEFAULT_WAIT
    if time_remaining is not None:
        chosen = min(chosen, timedelta(seconds=max(time_remaining - DEADLINE_MARGIN, 0)))
    return chosen


class CommandServicer(svc_grpc.CommandServiceServicer):
    def __init__(self, handlers: CommandHandlers) -> None:
        self._h = handlers

    async def CreateCommand(self, request: svc.CreateCommandRequest, context: Context) -> pb.Command:
        return command_to_proto(await self._h.create_command(current_principal(), create_request(request)))

    async def GetCommand(self, request: svc.GetCommandRequest, context: Context) -> pb.Command:
        device_id, command_id = command_of(request.name)
        return command_to_proto(await self._h.get_command(current_principal(), device_id, command_id))

    async def ListCommands(self, request: svc.ListCommandsRequest, context: Context) -> svc.ListCommandsResponse:
        device_id = device_of(request.parent, wildcard=True)
        found, token = await self._h.list_commands(
            current_principal(), device_id, filter_text=request.filter, order_by=request.order_by,
            page_size=request.page_size, page_token=request.page_token)
        return svc.ListCommandsResponse(commands=[command_to_proto(c) for c in found], next_page_token=token)

    async def CancelCommand(self, request: svc.CancelCommandRequest, context: Context) -> pb.Command:
        device_id, command_id = command_of(request.name)
        if len(request.reason) > 1000:
            raise InvalidArgument.field("reason", "must be at most 1000 characters")
        return command_to_proto(await self._h.cancel_command(current_principal(), device_id, command_id,
                                                             request.reason))

    async def WaitCommand(self, request: svc.WaitCommandRequest, context: Context) -> pb.Command:
        device_id, command_id = command_of(request.name)
        timeout = wait_timeout(request, context.time_remaining())
        return command_to_proto(await self._h.wait_command(current_principal(), device_id, command_id, timeout))
