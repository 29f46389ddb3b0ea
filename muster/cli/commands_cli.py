"""`muster commands`: send a command to a device and follow it (create, get, list, cancel, wait).

Needs a tenant token: operator to create and cancel, viewer to read and wait. Talks to the commands
service (grpc.commands in endpoints.json, or --grpc).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from muster.cli import output as out
from muster.cli.commands import Listing, call, show, show_list
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    DataDirOption,
    FilterOption,
    GrpcOption,
    OrderByOption,
    Output,
    OutputOption,
    PageSizeOption,
    PageTokenOption,
    TimeoutOption,
    TokenOption,
    resource_name,
)
from muster.cli.options import connection as _connection
from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    from pathlib import Path

    from grpc.aio import Channel

    from muster.cli.client import Connection
    from muster.commands.v1.command_service_pb2_grpc import CommandServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Commands sent to devices, tracked until they succeed, fail, time "
                                             "out, expire or are canceled.")

DeviceArg = Annotated[str, typer.Argument(metavar="DEVICE", help="Device id (or devices/ID).", show_default=False)]
CommandArg = Annotated[str, typer.Argument(
    metavar="COMMAND", help="Command id, or its full name devices/DEVICE/commands/ID.", show_default=False)]


def _name(state: pb.CommandState.ValueType) -> str:
    return pb.CommandState.Name(state).removeprefix("COMMAND_STATE_")


def _state(command: pb.Command) -> str:
    return _name(command.state)


def _json(message: Any) -> str:
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"), ensure_ascii=False)


COLUMNS: out.Columns = (
    ("ID", lambda c: out.short_id(c.name)),
    ("DEVICE", lambda c: c.name.split("/")[1]),
    ("COMMAND", lambda c: c.command),
    ("STATE", _state),
    ("ATTEMPTS", lambda c: str(c.attempts)),
    ("CREATED", lambda c: out.when(c.create_time)),
    ("FINISHED", lambda c: out.when(c.finish_time)),
)
DETAIL: out.Columns = (
    ("NAME", lambda c: c.name),
    ("COMMAND", lambda c: c.command),
    ("PARAMETERS", lambda c: _json(c.parameters)),
    ("STATE", _state),
    ("ATTEMPTS", lambda c: f"{c.attempts} of {c.retry_policy.max_attempts}"),
    ("CREATOR", lambda c: c.creator),
    ("CREATED", lambda c: out.when(c.create_time)),
    ("SENT", lambda c: out.when(c.send_time)),
    ("DELIVERED", lambda c: out.when(c.deliver_time)),
    ("FINISHED", lambda c: out.when(c.finish_time)),
    ("EXPIRES", lambda c: out.when(c.expire_time)),
    ("OUTPUT", lambda c: _json(c.output) if c.HasField("output") else ""),
    ("ERROR", lambda c: c.error),
    ("HISTORY", lambda c: "; ".join(f"{out.when(h.time)} {_name(h.to_state)} ({h.reason})" for h in c.history)),
)


def connection(grpc: str | None, token: str | None, timeout: float, data_dir: Path | None) -> Connection:
    return replace(_connection(grpc, token, timeout, data_dir), service="commands")


def _stub(channel: Channel) -> CommandServiceAsyncStub:
    return svc_grpc.CommandServiceStub(channel)


def command_name(device: str, command: str) -> str:
    """`ID` with DEVICE, or a full `devices/D/commands/ID`."""
    if command.startswith("devices/"):
        return command
    if "/" in command or not command:
        raise typer.BadParameter(f"expected a command id or devices/DEVICE/commands/ID, got {command!r}",
                                 param_hint="COMMAND")
    return f"{resource_name('devices', device, 'DEVICE')}/commands/{command}"


def _duration(seconds: float | None) -> Duration | None:
    if seconds is None:
        return None
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def parse_params(values: list[str] | None, params_json: str | None) -> dict[str, Any]:
    """`--param key=value` (value read as JSON when it parses, else a string), or `--params '{...}'`."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--params") from exc
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--params")
        params.update(loaded)
    for item in values or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@app.command("create")
def create_command(
    device: DeviceArg,
    command: Annotated[str, typer.Argument(metavar="NAME", help="A command of the device's template, e.g. reboot.",
                                           show_default=False)],
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="KEY=VALUE", help="A parameter (repeatable); VALUE is JSON if it parses: 5, true, "
                                             "\"text\"; else a string.", show_default=False)] = None,
    params: Annotated[str | None, typer.Option("--params", metavar="JSON", help="All parameters as a JSON object.",
                                               show_default=False)] = None,
    request_id: Annotated[str, typer.Option(
        "--request-id", help="Idempotency key: repeating the same request returns the first command.")] = "",
    ttl: Annotated[float | None, typer.Option("--ttl", min=0.001, metavar="SECONDS", show_default=False,
                                              help="How long it may wait for delivery.")] = None,
    ack_timeout: Annotated[float | None, typer.Option("--ack-timeout", min=0.001, metavar="SECONDS",
                                                      show_default=False,
                                                      help="How long the device has to acknowledge.")] = None,
    execution_timeout: Annotated[float | None, typer.Option(
        "--execution-timeout", min=0.001, metavar="SECONDS", show_default=False,
        help="How long the device has to report a result.")] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", min=1, max=10, show_default=False,
                                                     help="Sends before it times out unacknowledged.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Then wait (up to --timeout) until it finishes.")] = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Send a command to a device (needs an operator token). It waits PENDING while the device is offline."""
    body = pb.Command(command=command)
    body.parameters.update(parse_params(param, params))
    for field, seconds in (("ttl", ttl), ("delivery_timeout", ack_timeout), ("execution_timeout", execution_timeout)):
        if (duration := _duration(seconds)) is not None:
            getattr(body, field).CopyFrom(duration)
    if max_attempts is not None:
        body.retry_policy.max_attempts = max_attempts
    request = svc.CreateCommandRequest(parent=resource_name("devices", device, "DEVICE"), command=body,
                                       request_id=request_id)
    target = connection(grpc, token, timeout, data_dir)
    if not wait:
        show(target, lambda c: _stub(c).CreateCommand, request, output, DETAIL)
        return
    created = call(target, lambda c: _stub(c).CreateCommand, request)
    show(target, lambda c: _stub(c).WaitCommand, svc.WaitCommandRequest(name=created.name), output, DETAIL)


@app.command("get")
def get_command(
    device: DeviceArg, command: CommandArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one command with its history."""
    request = svc.GetCommandRequest(name=command_name(device, command))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetCommand, request, output, DETAIL)


@app.command("list")
def list_commands(
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="Device id, or '-' for every device.")] = "-",
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List commands, newest first (filter over state, command, creator, create_time, update_time, finish_time)."""
    parent = resource_name("devices", device, "DEVICE")

    def request(**fields: Any) -> svc.ListCommandsRequest:
        return svc.ListCommandsRequest(parent=parent, **fields)

    show_list(connection(grpc, token, timeout, data_dir), "commands", lambda c: _stub(c).ListCommands, request,
              Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("cancel")
def cancel_command(
    device: DeviceArg, command: CommandArg,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the history.")] = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel a command that has not finished (needs an operator token)."""
    request = svc.CancelCommandRequest(name=command_name(device, command), reason=reason)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CancelCommand, request, output, DETAIL)


@app.command("wait")
def wait_command(
    device: DeviceArg, command: CommandArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Wait until the command finishes, or --timeout passes (then show it as it is; at most 60 s per call)."""
    request = svc.WaitCommandRequest(name=command_name(device, command))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).WaitCommand, request, output, DETAIL)
