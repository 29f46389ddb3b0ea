"""`muster tenants`: customer organisations. Platform admins only (the bootstrap token from `muster up`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from muster.cli import output as out
from muster.cli.commands import Listing, delete, show, show_list
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    DataDirOption,
    EtagOption,
    FilterOption,
    GrpcOption,
    OrderByOption,
    Output,
    OutputOption,
    PageSizeOption,
    PageTokenOption,
    TimeoutOption,
    TokenOption,
    connection,
    resource_name,
)
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc

if TYPE_CHECKING:
    from grpc.aio import Channel

    from muster.registry.v1.tenant_service_pb2_grpc import TenantServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Tenants: one per customer organisation (platform admins only).")

TenantArg = Annotated[str, typer.Argument(metavar="ID", help="Tenant id (or tenants/ID).", show_default=False)]

COLUMNS: out.Columns = (
    ("ID", lambda t: out.short_id(t.name)),
    ("DISPLAY NAME", lambda t: t.display_name),
    ("CREATED", lambda t: out.when(t.create_time)),
    ("UPDATED", lambda t: out.when(t.update_time)),
    ("ETAG", lambda t: t.etag),
)


def _name(value: str) -> str:
    return resource_name("tenants", value, "ID")


def _stub(channel: Channel) -> TenantServiceAsyncStub:
    return ten_grpc.TenantServiceStub(channel)


@app.command("create")
def create_tenant(
    tenant_id: Annotated[str, typer.Argument(
        metavar="ID", show_default=False,
        help="The new tenant's id: 3-40 of a-z, 0-9 and '-', starting with a letter; it cannot change.")],
    display_name: Annotated[str, typer.Option("--display-name", help="Human-readable name.", show_default=False)],
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Create a tenant. Then issue its first admin token with `muster tokens issue --tenant ID --role admin`."""
    request = ten.CreateTenantRequest(tenant_id=tenant_id, tenant=pb.Tenant(display_name=display_name))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CreateTenant, request, output, COLUMNS)


@app.command("list")
def list_tenants(
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List tenants (filter over display_name and create_time)."""
    show_list(connection(grpc, token, timeout, data_dir), "tenants", lambda c: _stub(c).ListTenants,
              ten.ListTenantsRequest, Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("get")
def get_tenant(
    tenant: TenantArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one tenant (a tenant's own tokens may read it too)."""
    request = ten.GetTenantRequest(name=_name(tenant))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetTenant, request, output, COLUMNS)


@app.command("delete")
def delete_tenant(
    tenant: TenantArg,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a tenant. Refused (FAILED_PRECONDITION) while it still owns sites or devices: delete those first."""
    request = ten.DeleteTenantRequest(name=_name(tenant), etag=etag)
    delete(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).DeleteTenant, request, output)
