"""`muster sites`: places devices are installed at. Needs a tenant token (admin to change, viewer to read)."""

from __future__ import annotations

from typing import Annotated

import typer

from muster.cli import output as out
from muster.cli.client import Session, fail, list_all, run
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    DataDirOption,
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
    TimeoutOption,
    TokenOption,
    connection,
    label_changes,
    parse_labels,
    parse_location,
    resource_name,
)
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import site_service_pb2_grpc as site_grpc

app = typer.Typer(no_args_is_help=True, help="Sites: buildings, plants, depots where devices are installed.")

SiteArg = Annotated[str, typer.Argument(metavar="ID", help="Site id (or sites/ID).", show_default=False)]
DisplayNameOption = Annotated[str | None, typer.Option("--display-name", show_default=False,
                                                       help="Human-readable name.")]
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

    async def work(session: Session) -> pb.Site:
        return await session.call(site_grpc.SiteServiceStub(session.channel).CreateSite, request)

    out.emit_one(run(connection(grpc, token, timeout, data_dir), work), output, DETAIL)


@app.command("list")
def list_sites(
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the tenant's sites (filter over display_name, time_zone, labels.KEY and create_time)."""

    async def work(session: Session) -> tuple[list[pb.Site], str]:
        stub = site_grpc.SiteServiceStub(session.channel)

        async def page(page_token: str) -> tuple[list[pb.Site], str]:
            response = await session.call(stub.ListSites, site.ListSitesRequest(
                page_size=page_size, page_token=page_token, filter=filter_, order_by=order_by))
            return list(response.sites), response.next_page_token

        return await list_all(page, page_token, follow=all_pages)

    sites, next_page_token = run(connection(grpc, token, timeout, data_dir), work)
    out.emit_list("sites", sites, next_page_token, output, COLUMNS)


@app.command("get")
def get_site(
    site_id: SiteArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one site, with its etag."""
    request = site.GetSiteRequest(name=_name(site_id))

    async def work(session: Session) -> pb.Site:
        return await session.call(site_grpc.SiteServiceStub(session.channel).GetSite, request)

    out.emit_one(run(connection(grpc, token, timeout, data_dir), work), output, DETAIL)


@app.command("update")
def update_site(
    site_id: SiteArg,
    display_name: DisplayNameOption = None, address: AddressOption = None, time_zone: TimeZoneOption = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="KEY=VALUE", show_default=False,
        help="Replace ALL labels with these; repeat for more.")] = None,
    clear_labels: Annotated[bool, typer.Option("--clear-labels", help="Remove every label.")] = False,
    location: LocationOption = None,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Change the fields given as options, and only those (the update mask lists exactly them)."""
    changed = pb.Site(name=_name(site_id), etag=etag)
    mask: list[str] = []
    for path, value in (("display_name", display_name), ("address", address), ("time_zone", time_zone)):
        if value is not None:
            setattr(changed, path, value)
            mask.append(path)
    if (labels := label_changes(label, clear_labels)) is not None:
        changed.labels.update(labels)
        mask.append("labels")
    if location is not None:
        changed.location.CopyFrom(parse_location(location))
        mask.append("location")
    if not mask:
        fail(["error: nothing to change: give at least one of --display-name, --address, "
              "--time-zone, --label, --clear-labels, --location"], code=2)
    request = site.UpdateSiteRequest(site=changed)
    request.update_mask.paths.extend(mask)

    async def work(session: Session) -> pb.Site:
        return await session.call(site_grpc.SiteServiceStub(session.channel).UpdateSite, request)

    out.emit_one(run(connection(grpc, token, timeout, data_dir), work), output, DETAIL)


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

    async def work(session: Session) -> None:
        await session.call(site_grpc.SiteServiceStub(session.channel).DeleteSite, request)

    run(connection(grpc, token, timeout, data_dir), work)
    out.emit_deleted(request.name, output)
