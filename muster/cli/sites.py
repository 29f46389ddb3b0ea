"""`muster sites`: places devices are installed at. Needs a tenant token (admin to change, viewer to read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from muster.cli import output as out
from muster.cli.commands import Listing, delete, show, show_list, update_mask
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    ClearLabelsOption,
    DataDirOption,
    DisplayNameOption,
    EtagOption,
    FilterOption,
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
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import site_service_pb2_grpc as site_grpc

if TYPE_CHECKING:
    from grpc.aio import Channel

    from muster.registry.v1.site_service_pb2_grpc import SiteServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Sites: buildings, plants, depots where devices are installed.")

SiteArg = Annotated[str, typer.Argument(metavar="ID", help="Site id (or sites/ID).", show_default=False)]
AddressOption = Annotated[str | None, typer.Option("--address", show_default=False, help="Postal address.")]
TimeZoneOption = Annotated[str | None, typer.Option(
    "--time-zone", metavar="IANA", show_default=False, help="IANA time zone such as Europe/Berlin (default UTC).")]

COLUMNS: out.Columns = (
    ("ID", lambda s: out.short_id(s.name)),
    ("DISPLAY NAME", lambda s: s.display_name),
    ("TIME ZONE", lambda s: s.time_zone),
    ("LABELS", lambda s: out.labels(s.labels)),
    ("ADDRESS", lambda s: s.address),
    ("CREATED", lambda s: out.when(s.create_time)),
)
DETAIL: out.Columns = (
    *COLUMNS[:5],
    ("LOCATION", out.location),
    *COLUMNS[5:],
    ("UPDATED", lambda s: out.when(s.update_time)),
    ("ETAG", lambda s: s.etag),
)


def _name(value: str) -> str:
    return resource_name("sites", value, "ID")


def _stub(channel: Channel) -> SiteServiceAsyncStub:
    return site_grpc.SiteServiceStub(channel)


@app.command("create")
def create_site(
    display_name: Annotated[str, typer.Option("--display-name", show_default=False, help="Human-readable name.")],
    site_id: Annotated[str, typer.Option(
        "--id", metavar="ID", help="Id to use: 3-40 of a-z, 0-9 and '-', starting with a letter. "
                                   "Default: generated.")] = "",
    address: AddressOption = None, time_zone: TimeZoneOption = None, label: LabelsOption = None,
    location: LocationOption = None,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Create a site (needs a tenant admin token)."""
    new = pb.Site(display_name=display_name, address=address or "", time_zone=time_zone or "",
                  labels=parse_labels(label))
    if location is not None:
        new.location.CopyFrom(parse_location(location))
    request = site.CreateSiteRequest(site_id=site_id, site=new)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CreateSite, request, output, DETAIL)


@app.command("list")
def list_sites(
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the tenant's sites (filter over display_name, time_zone, labels.KEY and create_time)."""
    show_list(connection(grpc, token, timeout, data_dir), "sites", lambda c: _stub(c).ListSites,
              site.ListSitesRequest, Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("get")
def get_site(
    site_id: SiteArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one site, with its etag."""
    request = site.GetSiteRequest(name=_name(site_id))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetSite, request, output, DETAIL)


@app.command("update")
def update_site(
    site_id: SiteArg,
    display_name: DisplayNameOption = None, address: AddressOption = None, time_zone: TimeZoneOption = None,
    label: ReplaceLabelsOption = None, clear_labels: ClearLabelsOption = False, location: LocationOption = None,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Change the fields given as options, and only those (the update mask lists exactly them)."""
    changed = pb.Site(name=_name(site_id), etag=etag)
    mask = update_mask(changed, {"display_name": display_name, "address": address, "time_zone": time_zone},
                       label, clear_labels, location,
                       "--display-name, --address, --time-zone, --label, --clear-labels, --location")
    request = site.UpdateSiteRequest(site=changed)
    request.update_mask.paths.extend(mask)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).UpdateSite, request, output, DETAIL)


@app.command("delete")
def delete_site(
    site_id: SiteArg,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a site. Refused (FAILED_PRECONDITION) while devices are installed there: move or delete them."""
    request = site.DeleteSiteRequest(name=_name(site_id), etag=etag)
    delete(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).DeleteSite, request, output)
