"""`muster tokens`: operator tokens (signed JWTs carrying a tenant and a role)."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from muster.cli import output as out
from muster.cli.commands import call
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    DataDirOption,
    GrpcOption,
    Output,
    TimeoutOption,
    TokenOption,
    connection,
    parse_ttl,
    resource_name,
)
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc

app = typer.Typer(no_args_is_help=True, help="Operator tokens: who may do what in which tenant.")


class RoleChoice(enum.StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"
    platform_admin = "platform-admin"


ROLES = {
    RoleChoice.viewer: tok.ROLE_VIEWER,
    RoleChoice.operator: tok.ROLE_OPERATOR,
    RoleChoice.admin: tok.ROLE_ADMIN,
    RoleChoice.platform_admin: tok.ROLE_PLATFORM_ADMIN,
}


@app.command("issue")
def issue_token(
    role: Annotated[RoleChoice, typer.Option(
        "--role", show_default=False, case_sensitive=False,
        help="viewer: read only; operator: also create, update and operate devices; admin: everything in the "
             "tenant, incl. sites and issuing tokens; platform-admin: manages tenants, bound to none.")],
    subject: Annotated[str, typer.Option(
        "--subject", show_default=False, help="Who the token is for, e.g. an e-mail address or a script's name.")],
    tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="ID", show_default=False,
        help="Tenant id (or tenants/ID) the token acts in; required unless --role platform-admin.")] = None,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", metavar="DURATION", show_default=False,
        help="Lifetime such as 8h, 30d or 1w (units s, m, h, d, w). Default 24h, at most 365d.")] = None,
    output: Annotated[Output, typer.Option(
        "--output", "-o", help="table prints the token alone; json adds its expire_time.")] = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Issue an operator token and print only the token, for
    `export MUSTER_TOKEN=$(muster tokens issue --tenant acme --role admin --subject ops@acme.example)`.

    A platform admin issues tokens for any tenant; a tenant admin for its own tenant only.
    """
    if role is RoleChoice.platform_admin and tenant:
        raise typer.BadParameter("a platform-admin token is bound to no tenant; drop --tenant", param_hint="--tenant")
    if role is not RoleChoice.platform_admin and not tenant:
        raise typer.BadParameter(f"{role.value} tokens act in one tenant: give --tenant ID", param_hint="--tenant")
    request = tok.IssueOperatorTokenRequest(
        tenant=resource_name("tenants", tenant, "--tenant") if tenant else "", role=ROLES[role], subject=subject)
    if ttl is not None:
        request.ttl.CopyFrom(parse_ttl(ttl))
    issued = call(connection(grpc, token, timeout, data_dir),
                  lambda c: tok_grpc.TokenServiceStub(c).IssueOperatorToken, request)
    if output is Output.json:
        out.emit_json(out.to_dict(issued))
    else:
        typer.echo(issued.token)
