"""`muster twin`: a device's desired and reported state, the delta between them, desired history.

Needs a tenant token: viewer to read, operator to change desired state. Talks to the twin service
(grpc.twin in endpoints.json, or --grpc).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from google.protobuf import json_format

from muster.cli import output as out
from muster.cli.client import Session, list_all, run
from muster.cli.commands import call, show
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    DataDirOption,
    GrpcOption,
    Output,
    OutputOption,
    PageSizeOption,
    PageTokenOption,
    TimeoutOption,
    TokenOption,
    resource_name,
)
from muster.cli.options import connection as _connection
from muster.twin.v1 import twin_resources_pb2 as pb
from muster.twin.v1 import twin_service_pb2 as svc
from muster.twin.v1 import twin_service_pb2_grpc as svc_grpc

if TYPE_CHECKING:
    from pathlib import Path

    from grpc.aio import Channel

    from muster.cli.client import Connection
    from muster.twin.v1.twin_service_pb2_grpc import TwinServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Device twins: desired and reported state, delta, desired history.")

DeviceArg = Annotated[str, typer.Argument(metavar="DEVICE", help="Device id (or devices/ID).", show_default=False)]
TwinEtagOption = Annotated[str, typer.Option(
    "--etag", help="The twin's etag from `muster twin get`: refused (ABORTED) if desired changed since.")]
ForceOption = Annotated[bool, typer.Option(
    "--force", help="Write without --etag (last writer wins).")]


def _json(value: Any) -> str:
    return json.dumps(json_format.MessageToDict(value) if hasattr(value, "DESCRIPTOR") else value,
                      separators=(",", ":"), ensure_ascii=False)


def _pending(twin: Any) -> str:
    delta = twin.delta
    waiting = [c.path for c in delta.convergence if c.status != pb.CONVERGENCE_APPLIED]
    return "in sync" if delta.in_sync else f"{len(waiting)} pending/rejected: {' '.join(waiting)}"


DETAIL: out.Columns = (
    ("NAME", lambda t: t.name),
    ("DESIRED", lambda t: f"v{t.desired_version} {_json(t.desired)}"),
    ("REPORTED", lambda t: f"v{t.reported_version} {_json(t.reported)}"),
    ("SYNC", _pending),
    ("UPDATED", lambda t: out.when(t.update_time)),
    ("ETAG", lambda t: t.etag),
)
REVISIONS: out.Columns = (
    ("REVISION", lambda r: str(r.revision)),
    ("WHEN", lambda r: out.when(r.create_time)),
    ("ACTOR", lambda r: r.actor),
    ("ROLLBACK OF", lambda r: str(r.rollback_of) if r.rollback_of else ""),
    ("PATCH", lambda r: _json(r.patch)),
)


def _twin(value: str) -> str:
    return resource_name("devices", value, "DEVICE") + "/twin"


def _stub(channel: Channel) -> TwinServiceAsyncStub:
    return svc_grpc.TwinServiceStub(channel)


def connection(grpc: str | None, token: str | None, timeout: float, data_dir: Path | None) -> Connection:
    return replace(_connection(grpc, token, timeout, data_dir), service="twin")


def _etag_or_force(etag: str, force: bool) -> None:
    if not etag and not force:
        raise typer.BadParameter("give --etag (from `muster twin get`) or --force", param_hint="--etag")


def parse_patch(text: str) -> dict[str, Any]:
    try:
        patch = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="PATCH") from exc
    if not isinstance(patch, dict) or not patch:
        raise typer.BadParameter("a JSON merge patch is a non-empty JSON object, e.g. '{\"fan\": {\"speed\": 1200}}'",
                                 param_hint="PATCH")
    return patch


@app.command("get")
def get_twin(
    device: DeviceArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show a device's twin: desired, reported, whether it is in sync, and the etag to update with."""
    request = svc.GetTwinRequest(name=_twin(device))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetTwin, request, output, DETAIL)


@app.command("update-desired")
def update_desired(
    device: DeviceArg,
    patch: Annotated[str, typer.Argument(metavar="PATCH", show_default=False,
                                         help="JSON merge patch (RFC 7386): null deletes a key.")],
    etag: TwinEtagOption = "", force: ForceOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Merge PATCH into the desired state (a new revision; the device gets it on twin/desired)."""
    _etag_or_force(etag, force)
    request = svc.UpdateDesiredRequest(name=_twin(device), etag=etag, force=force)
    request.patch.update(parse_patch(patch))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).UpdateDesired, request, output, DETAIL)


@app.command("revisions")
def list_revisions(
    device: DeviceArg,
    page_size: PageSizeOption = 0, page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the desired-state revisions, newest first: who changed what, when."""
    name = _twin(device)

    async def work(session: Session) -> tuple[list[Any], str]:
        method = _stub(session.channel).ListDesiredRevisions

        async def page(token_: str) -> tuple[list[Any], str]:
            response = await session.call(method, svc.ListDesiredRevisionsRequest(
                parent=name, page_size=page_size, page_token=token_))
            return list(response.revisions), response.next_page_token

        return await list_all(page, page_token, follow=all_pages)

    items, next_page_token = run(connection(grpc, token, timeout, data_dir), work)
    out.emit_list("revisions", items, next_page_token, output, REVISIONS)


@app.command("rollback")
def rollback(
    device: DeviceArg,
    revision: Annotated[int, typer.Argument(metavar="REVISION", min=1, help="The revision to restore.")],
    etag: TwinEtagOption = "", force: ForceOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Make desired what it was at REVISION, as a new revision (history is kept)."""
    _etag_or_force(etag, force)
    request = svc.RollbackDesiredRequest(name=_twin(device), revision=revision, etag=etag, force=force)
    twin = call(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).RollbackDesired, request)
    out.emit_one(twin, output, DETAIL)
