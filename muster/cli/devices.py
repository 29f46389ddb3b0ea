"""`muster devices`: the tenant's devices and their lifecycle (PROVISIONED -> ACTIVE <-> SUSPENDED -> RETIRED).

Needs a tenant token: viewer to read, operator to create, update, activate and suspend, admin to retire
and delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from muster.cli import device_credentials, devices_bulk
from muster.cli import output as out
from muster.cli.commands import Listing, Rpc, delete, show, show_list, update_mask
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    ClearLabelsOption,
    DataDirOption,
    DisplayNameOption,
    EtagOption,
    GrpcOption,
    LabelsOption,
    LocationOption,
    OrderByOption,
    Output,
    OutputOption,
    PageSizeOption,
    PageTokenOption,
    ReplaceLabelsOption,
    TimeoutOption,
    TokenOption,
    connection,
    parse_labels,
    parse_location,
    resource_name,
)
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    from grpc.aio import Channel

    from muster.registry.v1.device_service_pb2_grpc import DeviceServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Devices: create, list, change and move through their lifecycle.")

DeviceArg = Annotated[str, typer.Argument(
    metavar="ID", show_default=False, help="Device id as issued by create (or devices/ID).")]
NotesOption = Annotated[str | None, typer.Option("--notes", show_default=False, help="Free text for operators.")]

COLUMNS: out.Columns = (
    ("ID", lambda d: out.short_id(d.name)),
    ("DISPLAY NAME", lambda d: d.display_name),
    ("STATE", lambda d: out.device_state(d.state)),
    ("SITE", lambda d: out.short_id(d.site)),
    ("SERIAL", lambda d: d.serial),
    ("LABELS", lambda d: out.labels(d.labels)),
    ("CREATED", lambda d: out.when(d.create_time)),
)
DETAIL: out.Columns = (
    *COLUMNS[:6],
    ("NOTES", lambda d: d.notes),
    ("LOCATION", out.location),
    ("TRANSPORTS", out.transports),
    *COLUMNS[6:],
    ("UPDATED", lambda d: out.when(d.update_time)),
    ("ETAG", lambda d: d.etag),
)


def _name(value: str) -> str:
    return resource_name("devices", value, "ID")


def _site(value: str) -> str:
    """`--site ''` means "at no site"."""
    return resource_name("sites", value, "--site") if value.strip() else ""


def _stub(channel: Channel) -> DeviceServiceAsyncStub:
    return dev_grpc.DeviceServiceStub(channel)


@app.command("create")
def create_device(
    display_name: DisplayNameOption = None,
    site: Annotated[str | None, typer.Option(
        "--site", metavar="ID", show_default=False, help="Site id (or sites/ID) the device is installed at.")] = None,
    serial: Annotated[str | None, typer.Option(
        "--serial", show_default=False, help="Manufacturer serial, unique in the tenant; cannot change later.")] = None,
    label: LabelsOption = None, notes: NotesOption = None, location: LocationOption = None,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Register a device; it starts PROVISIONED, and the server issues its id (shown as ID)."""
    device = pb.Device(display_name=display_name or "", site=_site(site or ""), serial=serial or "",
                       labels=parse_labels(label), notes=notes or "")
    if location is not None:
        device.location.CopyFrom(parse_location(location))
    request = dev.CreateDeviceRequest(device=device)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CreateDevice, request, output, DETAIL)


@app.command("list")
def list_devices(
    filter_: Annotated[str, typer.Option(
        "--filter", metavar="EXPR", rich_help_panel="Listing",
        help="AIP-160 filter over display_name, serial, site, state, labels.KEY, create_time, update_time, "
             "e.g. 'state = ACTIVE AND labels.floor = \"3\" AND create_time > \"2026-01-01T00:00:00Z\"'.")] = "",
    order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the tenant's devices: one page, or every page with --all.

    --order-by takes display_name, serial, create_time and update_time.
    """
    show_list(connection(grpc, token, timeout, data_dir), "devices", lambda c: _stub(c).ListDevices,
              dev.ListDevicesRequest, Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("get")
def get_device(
    device: DeviceArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one device, with its state and etag."""
    request = dev.GetDeviceRequest(name=_name(device))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetDevice, request, output, DETAIL)


@app.command("update")
def update_device(
    device: DeviceArg,
    display_name: DisplayNameOption = None,
    site: Annotated[str | None, typer.Option(
        "--site", metavar="ID", show_default=False, help="Move to this site; --site '' for no site.")] = None,
    label: ReplaceLabelsOption = None, clear_labels: ClearLabelsOption = False,
    notes: NotesOption = None, location: LocationOption = None,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Change the fields given as options, and only those (the update mask lists exactly them).

    The state changes only through activate, suspend and retire; the serial never changes.
    """
    changed = pb.Device(name=_name(device), etag=etag)
    fields = {"display_name": display_name, "site": None if site is None else _site(site), "notes": notes}
    mask = update_mask(changed, fields, label, clear_labels, location,
                       "--display-name, --site, --label, --clear-labels, --notes, --location")
    request = dev.UpdateDeviceRequest(device=changed)
    request.update_mask.paths.extend(mask)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).UpdateDevice, request, output, DETAIL)


@app.command("delete")
def delete_device(
    device: DeviceArg,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a device for good (needs a tenant admin token). To keep its record, retire it instead."""
    request = dev.DeleteDeviceRequest(name=_name(device), etag=etag)
    delete(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).DeleteDevice, request, output)


def _lifecycle_command(verb: str, doc: str, rpc: Rpc[Any, pb.Device], request: Callable[..., Any]) -> None:
    """activate, suspend and retire differ only in the RPC they call."""

    def command(
        device: DeviceArg,
        reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail and the event.")] = "",
        etag: EtagOption = "",
        output: OutputOption = Output.table,
        grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
        data_dir: DataDirOption = None,
    ) -> None:
        show(connection(grpc, token, timeout, data_dir), rpc, request(name=_name(device), etag=etag, reason=reason),
             output, DETAIL)

    command.__doc__ = doc
    command.__name__ = f"{verb}_device"
    app.command(verb)(command)


_lifecycle_command("activate", "Put a PROVISIONED or SUSPENDED device in service (ACTIVE).",
                   lambda c: _stub(c).ActivateDevice, dev.ActivateDeviceRequest)
_lifecycle_command("suspend", "Refuse an ACTIVE device at connect (SUSPENDED) until it is activated again.",
                   lambda c: _stub(c).SuspendDevice, dev.SuspendDeviceRequest)
_lifecycle_command("retire", "Take a device out of service for good (RETIRED is final; needs a tenant admin "
                   "token).", lambda c: _stub(c).RetireDevice, dev.RetireDeviceRequest)
app.command("import")(devices_bulk.import_devices)
app.command("export")(devices_bulk.export_devices)
app.command("register")(device_credentials.register_device)
app.command("rotate-secret")(device_credentials.rotate_secret)
