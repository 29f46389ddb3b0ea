"""Options every registry command shares, and the parsers that turn operator input into proto values.

Connection options are per command (not global) so they can go anywhere on the line:
`muster devices list -o json --grpc 127.0.0.1:50051`.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf.duration_pb2 import Duration

from muster.cli.client import Connection
from muster.registry.v1 import resources_pb2 as pb

CONNECTION_PANEL = "Connection"
LIST_PANEL = "Listing"
DEFAULT_TIMEOUT = 10.0


class Output(enum.StrEnum):
    table = "table"
    json = "json"


GrpcOption = Annotated[str | None, typer.Option(
    "--grpc", envvar="MUSTER_GRPC", metavar="HOST:PORT", rich_help_panel=CONNECTION_PANEL, show_default=False,
    help="The registry's gRPC address. Default: grpc.registry from <data-dir>/run/endpoints.json "
         "(written by `muster up`), else 127.0.0.1:50051.")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="MUSTER_TOKEN", metavar="JWT", rich_help_panel=CONNECTION_PANEL, show_default=False,
    help="Operator token, sent as 'authorization: Bearer'. Default: the bootstrap platform-admin token in "
         "<data-dir>/run/endpoints.json; it manages tenants and tokens only, so for sites and devices "
         "export MUSTER_TOKEN=$(muster tokens issue --tenant ID --role admin --subject YOU).")]
TimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS", rich_help_panel=CONNECTION_PANEL,
    help="Deadline of each call.")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="MUSTER_DATA_DIR", rich_help_panel=CONNECTION_PANEL, show_default=False,
    help="Data dir of the `muster up` to talk to: its run/endpoints.json supplies the address and "
         "token. Default: ~/.local/share/muster ($XDG_DATA_HOME/muster).")]
OutputOption = Annotated[Output, typer.Option(
    "--output", "-o", help="table for people, json for scripts (proto field names).")]

FilterOption = Annotated[str, typer.Option(
    "--filter", metavar="EXPR", rich_help_panel=LIST_PANEL,
    help="AIP-160 filter, e.g. 'state = ACTIVE AND labels.floor = \"3\"'.")]
OrderByOption = Annotated[str, typer.Option(
    "--order-by", metavar="FIELDS", rich_help_panel=LIST_PANEL,
    help="Comma-separated fields, each optionally followed by ' desc'. Default: create_time.")]
PageSizeOption = Annotated[int, typer.Option(
    "--page-size", min=0, max=500, metavar="N", rich_help_panel=LIST_PANEL,
    help="Items per page (0: the server's default of 50).")]
PageTokenOption = Annotated[str, typer.Option(
    "--page-token", metavar="TOKEN", rich_help_panel=LIST_PANEL,
    help="Continue a listing from the next_page_token of a previous one (same filter and order).")]
AllOption = Annotated[bool, typer.Option(
    "--all", rich_help_panel=LIST_PANEL, help="Follow next_page_token until the last page.")]

LabelsOption = Annotated[list[str] | None, typer.Option(
    "--label", metavar="KEY=VALUE", show_default=False, help="A label; repeat for more.")]
ReplaceLabelsOption = Annotated[list[str] | None, typer.Option(
    "--label", metavar="KEY=VALUE", show_default=False, help="Replace ALL labels with these; repeat for more.")]
ClearLabelsOption = Annotated[bool, typer.Option("--clear-labels", help="Remove every label.")]
DisplayNameOption = Annotated[str | None, typer.Option("--display-name", show_default=False,
                                                       help="Human-readable name.")]
LocationOption = Annotated[str | None, typer.Option(
    "--location", metavar="LAT,LON[,ALT]", show_default=False,
    help="WGS 84 position in degrees, altitude in metres.")]


def _quoted_etag(value: str) -> str:
    """Etags are HTTP-style quoted strings (`"3"`); the shell eats the quotes of `--etag "3"`, so add them back."""
    value = value.strip()
    if not value or value.startswith(('"', "W/")):
        return value
    return f'"{value}"'


EtagOption = Annotated[str, typer.Option(
    "--etag", callback=_quoted_etag,
    help="Refuse the change (ABORTED) unless the resource still has this etag, as shown by get "
         "(the quotes may be left out).")]


def connection(grpc: str | None, token: str | None, timeout: float, data_dir: Path | None) -> Connection:
    return Connection(grpc=grpc, token=token, timeout=timeout, data_dir=data_dir)


def resource_name(collection: str, value: str, option: str) -> str:
    """Accept both `ID` and `collection/ID`, so names copied from output work as well as bare ids."""
    value = value.strip()
    resource_id = value.removeprefix(f"{collection}/")
    if not resource_id or "/" in resource_id:
        raise typer.BadParameter(f"expected an id or {collection}/ID, got {value!r}", param_hint=option)
    return f"{collection}/{resource_id}"


def parse_labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--label")
        labels[key.strip()] = value
    return labels


def label_changes(values: list[str] | None, clear: bool) -> dict[str, str] | None:
    """The new label map for an update (labels are replaced whole), or None to leave labels alone."""
    if values and clear:
        raise typer.BadParameter("give --label or --clear-labels, not both", param_hint="--clear-labels")
    return parse_labels(values) if values or clear else None


def parse_location(value: str) -> pb.Location:
    parts = [part.strip() for part in value.split(",")]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 3):
        raise typer.BadParameter(f"expected LAT,LON or LAT,LON,ALT in degrees, got {value!r}",
                                 param_hint="--location")
    return pb.Location(latitude=numbers[0], longitude=numbers[1], altitude=numbers[2] if len(numbers) > 2 else 0.0)


_TTL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_TTL_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ttl(value: str) -> Duration:
    match = _TTL.match(value.lower())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"expected a positive number with a unit s, m, h, d or w (e.g. 24h, 30d), "
                                 f"got {value!r}", param_hint="--ttl")
    return Duration(seconds=int(match.group(1)) * _TTL_SECONDS[match.group(2)])
