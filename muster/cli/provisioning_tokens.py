"""`muster provisioning-tokens`: tokens devices register themselves with (`muster devices register`).

Needs a tenant admin token. The token's secret is printed once, by create; only its hash is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from muster.cli import output as out
from muster.cli.commands import Listing, call, show, show_list
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    AllOption,
    DataDirOption,
    DisplayNameOption,
    GrpcOption,
    LabelsOption,
    OrderByOption,
    Output,
    OutputOption,
    PageSizeOption,
    PageTokenOption,
    TimeoutOption,
    TokenOption,
    connection,
    parse_labels,
    parse_ttl,
    resource_name,
)
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc

if TYPE_CHECKING:
    from grpc.aio import Channel

    from muster.registry.v1.provisioning_service_pb2_grpc import ProvisioningServiceAsyncStub

app = typer.Typer(no_args_is_help=True,
                  help="Provisioning tokens: let devices register themselves (create, list, get, revoke).")

TokenArg = Annotated[str, typer.Argument(
    metavar="ID", show_default=False, help="Token id as shown by create or list (or provisioningTokens/ID).")]


def _state(token: ppb.ProvisioningToken) -> str:
    try:
        return ppb.ProvisioningTokenState.Name(token.state).removeprefix("PROVISIONING_TOKEN_STATE_")
    except ValueError:
        return str(token.state)


COLUMNS: out.Columns = (
    ("ID", lambda t: out.short_id(t.name)),
    ("DISPLAY NAME", lambda t: t.display_name),
    ("STATE", _state),
    ("USES", lambda t: f"{t.use_count}/{t.max_uses}"),
    ("SITE", lambda t: out.short_id(t.site)),
    ("TEMPLATE", lambda t: out.short_id(t.template)),
    ("EXPIRES", lambda t: out.when(t.expire_time)),
)
DETAIL: out.Columns = (
    *COLUMNS,
    ("LABELS", lambda t: out.labels(t.labels)),
    ("CLAIM EXISTING", lambda t: "yes" if t.claim_existing else "no"),
    ("CREATED", lambda t: out.when(t.create_time)),
    ("REVOKED", lambda t: out.when(t.revoke_time)),
)


def _stub(channel: Channel) -> ProvisioningServiceAsyncStub:
    return prov_grpc.ProvisioningServiceStub(channel)


def _name(value: str) -> str:
    return resource_name("provisioningTokens", value, "ID")


@app.command("create")
def create_token(
    display_name: DisplayNameOption = None,
    site: Annotated[str | None, typer.Option(
        "--site", metavar="ID", show_default=False,
        help="Devices registered with it are installed at this site.")] = None,
    template: Annotated[str | None, typer.Option(
        "--template", metavar="ID", show_default=False,
        help="Devices registered with it get this template (and its required sensors).")] = None,
    label: LabelsOption = None,
    max_uses: Annotated[int, typer.Option(
        "--max-uses", min=1, max=1_000_000, help="How many devices may register with it (1: one-time).")] = 1,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", metavar="DURATION", show_default=False,
        help="Lifetime such as 8h, 30d or 1w. Default 7d, at most 365d.")] = None,
    claim_existing: Annotated[bool, typer.Option(
        "--claim-existing", help="Let a device claim the tenant's never-registered device with its serial "
                                 "(e.g. one created ahead of delivery) instead of being refused.")] = False,
    output: Annotated[Output, typer.Option(
        "--output", "-o", help="table prints the token's fields and its secret; json the whole resource.")]
    = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Create a provisioning token and print its secret (mpt_...): the ONLY time it is shown.

    Hand the secret to the devices (or their installer): `muster devices register --provisioning-token ... --serial ...`
    or POST /v1/devices:register with no Authorization header.
    """
    created = ppb.ProvisioningToken(
        display_name=display_name or "", site=resource_name("sites", site, "--site") if site else "",
        template=resource_name("templates", template, "--template") if template else "",
        labels=parse_labels(label), max_uses=max_uses, claim_existing=claim_existing)
    if ttl is not None:
        created.ttl.CopyFrom(parse_ttl(ttl))
    request = prov.CreateProvisioningTokenRequest(provisioning_token=created)
    result = call(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CreateProvisioningToken, request)
    out.emit_one(result, output, (*DETAIL, ("SECRET", lambda t: t.secret)))
    if output is Output.table:
        typer.echo("The secret is shown only now: store it where your devices get it.", err=True)


@app.command("list")
def list_tokens(
    filter_: Annotated[str, typer.Option(
        "--filter", metavar="EXPR", rich_help_panel="Listing",
        help="AIP-160 filter over display_name, site, template, labels.KEY, create_time, expire_time.")] = "",
    order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the tenant's provisioning tokens (never their secrets).

    --order-by takes display_name, create_time and expire_time.
    """
    show_list(connection(grpc, token, timeout, data_dir), "provisioning_tokens",
              lambda c: _stub(c).ListProvisioningTokens, prov.ListProvisioningTokensRequest,
              Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("get")
def get_token(
    provisioning_token: TokenArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one provisioning token: its state and how often it was used."""
    request = prov.GetProvisioningTokenRequest(name=_name(provisioning_token))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetProvisioningToken, request, output,
         DETAIL)


@app.command("revoke")
def revoke_token(
    provisioning_token: TokenArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a token: no device can register with it any more (registered devices keep working)."""
    request = prov.RevokeProvisioningTokenRequest(name=_name(provisioning_token))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).RevokeProvisioningToken, request, output,
         DETAIL)
