"""`muster tenants`: customer organisations. Platform admins only (the bootstrap token from `muster up`)."""

from __future__ import annotations

from typing import Annotated

import typer

from muster.cli import output as out
from muster.cli.client import Session, list_all, run
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

    async def work(session: Session) -> pb.Tenant:
        return await session.call(ten_grpc.TenantServiceStub(session.channel).CreateTenant, request)

    out.emit_one(run(connection(grpc, token, timeout, data_dir), work), output, COLUMNS)


@app.command("list")
def list_tenants(
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List tenants (filter over display_name and create_time)."""

    async def work(session: Session) -> tuple[list[pb.Tenant], str]:
        stub = ten_grpc.TenantServiceStub(session.channel)

        async def page(page_token: str) -> tuple[list[pb.Tenant], str]:
            response = await session.call(stub.ListTenants, ten.ListTenantsRequest(
                page_size=page_size, page_token=page_token, filter=filter_, order_by=order_by))
            return list(response.tenants), response.next_page_token

        return await list_all(page, page_token, follow=all_pages)

    tenants, next_page_token = run(connection(grpc, token, timeout, data_dir), work)
    out.emit_list("tenants", tenants, next_page_token, output, COLUMNS)


@app.command("get")
def get_tenant(
    tenant: TenantArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one tenant (a tenant's own tokens may read it too)."""
    request = ten.GetTenantRequest(name=_name(tenant))

    async def work(session: Session) -> pb.Tenant:
        return await session.call(ten_grpc.TenantServiceStub(session.channel).GetTenant, request)

    out.emit_one(run(connection(grpc, token, timeout, data_dir), work), output, COLUMNS)


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

    async def work(session: Session) -> None:
        await session.call(ten_grpc.TenantServiceStub(session.channel).DeleteTenant, request)

    run(connection(grpc, token, timeout, data_dir), work)
    out.emit_deleted(request.name, output)
