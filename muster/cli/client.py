"""How the operator CLI reaches the registry: where, as whom, within what deadline, and how a failed
call reads to a person (one line, the field violations, a hint; never a traceback)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from muster.launcher.layout import DATA_DIR_ENV, Layout, default_data_dir

DEFAULT_GRPC = "127.0.0.1:50051"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
USER_AGENT = "muster-cli"

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class CliError(Exception):
    """A failure outside any RPC (e.g. an unreadable endpoints.json): printed as `error: ...`, exit 1."""


@dataclass(frozen=True)
class Connection:
    """The connection options as given (option or env var); None means "find it out"."""

    grpc: str | None
    token: str | None
    timeout: float
    data_dir: Path | None
    service: str = "registry"  # whose gRPC address endpoints.json supplies when --grpc is not given


@dataclass(frozen=True)
class Target:
    """Where and as whom one invocation calls, and the deadline of each call."""

    address: str
    token: str | None
    timeout: float


def read_endpoints(data_dir: Path) -> dict[str, Any]:
    """What `muster up` wrote for its clients; empty when the platform never ran from this data dir."""
    path = Layout(data_dir.expanduser()).endpoints
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    if not isinstance(content, dict):
        raise CliError(f"{path} is not a JSON object; restart `muster up` to rewrite it")
    return content


def data_dir_of(connection: Connection) -> Path:
    """--data-dir, else $MUSTER_DATA_DIR, else the default data dir."""
    return connection.data_dir or (
        Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else default_data_dir())


def resolve_target(connection: Connection) -> Target:
    """Explicit option or env var first, then the running platform's endpoints.json, then the default port."""
    address, token = connection.grpc, connection.token
    endpoints: dict[str, Any] = {}
    if not address or not token:
        endpoints = read_endpoints(data_dir_of(connection))
    grpc_endpoints = endpoints.get("grpc")
    registry = grpc_endpoints.get(connection.service) if isinstance(grpc_endpoints, dict) else None
    admin_token = endpoints.get("admin_token")
    return Target(
        address=address or (registry if isinstance(registry, str) and registry else DEFAULT_GRPC),
        token=token or (admin_token if isinstance(admin_token, str) and admin_token else None),
        timeout=connection.timeout,
    )


class Session:
    """One channel for the whole invocation; every call carries the token and the deadline."""

    def __init__(self, channel: grpc.aio.Channel, target: Target) -> None:
        self.channel = channel
        self._timeout = target.timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {target.token}"),) if target.token else ())

    async def call(self, method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        return await method(request, metadata=self._metadata, timeout=self._timeout)

    def call_options(self) -> dict[str, Any]:
        """The token and deadline every call carries, for streaming calls made on `channel` directly."""
        return {"metadata": self._metadata, "timeout": self._timeout}


async def list_all(page: Callable[[str], Awaitable[tuple[list[T], str]]], page_token: str,
                   *, follow: bool) -> tuple[list[T], str]:
    """One page, or with `follow` every page from `page_token` on; returns the items and the token left."""
    items, page_token = await page(page_token)
    while follow and page_token:
        more, page_token = await page(page_token)
        items += more
    return items, page_token


async def _in_session(target: Target, work: Callable[[Session], Awaitable[T]]) -> T:
    options = (("grpc.primary_user_agent", USER_AGENT),)
    async with grpc.aio.insecure_channel(target.address, options=options) as channel:
        return await work(Session(channel, target))


def run(connection: Connection, work: Callable[[Session], Awaitable[T]]) -> T:
    """Run `work` on a fresh channel; turn every failure into a short message and an exit code."""
    target: Target | None = None
    try:
        target = resolve_target(connection)
        return asyncio.run(_in_session(target, work))
    except grpc.aio.AioRpcError as error:
        fail(describe_rpc_error(error, target))
    except KeyboardInterrupt:
        fail(["error: interrupted"], code=130)
    except CliError as error:
        fail([f"error: {error}"])
    except Exception as error:  # never a traceback for an operator; say it is our bug instead
        fail([f"error: unexpected {type(error).__name__}: {error} (a bug in the muster CLI; please report it)"])


def fail(lines: Iterable[str], code: int = 1) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


def rich_status(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> Any:
    """The google.rpc.Status the server put in the trailers (grpc_status.rpc_status.from_call can't
    read aio errors), or None."""
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def describe_rpc_error(error: grpc.aio.AioRpcError, target: Target | None = None) -> list[str]:
    """`error: CODE: message`, then one line per BadRequest field violation (unless the message is that
    one violation), then a hint if we have one."""
    code = error.code()
    lines = [f"error: {code.name}: {error.details() or 'no message'}"]
    reason = ""
    status = rich_status(error.trailing_metadata())
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = [f"{v.field}: {v.description}" for v in bad_request.field_violations]
            if violations != [error.details()]:  # a one-field error already says it all in its message
                lines += [f"  - {violation}" for violation in violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
    hint = _hint(code, reason, target)
    if hint:
        lines.append(f"hint: {hint}")
    return lines


def _hint(code: grpc.StatusCode, reason: str, target: Target | None) -> str:
    """The next step for the failures an operator meets first."""
    if code is grpc.StatusCode.UNAVAILABLE:
        where = f" at {target.address}" if target else ""
        return (f"is the platform running{where}? Start it with `muster up`, or point --grpc / MUSTER_GRPC "
                "(or --data-dir) at it")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the call ran out of time; raise --timeout (seconds)"
    if reason == "TENANT_REQUIRED":
        return ("sites and devices need a tenant token: "
                "export MUSTER_TOKEN=$(muster tokens issue --tenant ID --role admin --subject YOU)")
    if reason == "TOKEN_MISSING":
        return "pass --token or set MUSTER_TOKEN (`muster up` also leaves an admin token in its endpoints.json)"
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return "the token was refused; issue a fresh one with `muster tokens issue`"
    if code is grpc.StatusCode.ABORTED:
        return "someone changed it meanwhile: read it again (get) and retry with the new --etag"
    return ""
