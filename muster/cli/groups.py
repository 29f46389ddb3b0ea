"""`muster groups`: static groups (explicit members) and dynamic groups (a device filter).

Needs a tenant token: viewer to read, operator to change groups and their members.
"""

from __future__ import annotations

import enum
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from muster.cli import devices
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
    resource_name,
)
from muster.registry.v1 import group_resources_pb2 as pb
from muster.registry.v1 import group_service_pb2 as grp
from muster.registry.v1 import group_service_pb2_grpc as grp_grpc

if TYPE_CHECKING:
    from grpc.aio import Channel

    from muster.registry.v1.group_service_pb2_grpc import GroupServiceAsyncStub

app = typer.Typer(no_args_is_help=True, help="Groups of devices: static (listed members) or dynamic (a filter).")


class Kind(enum.StrEnum):
    static = "static"
    dynamic = "dynamic"


GroupArg = Annotated[str, typer.Argument(metavar="ID", help="Group id (or groups/ID).", show_default=False)]
DevicesArg = Annotated[list[str], typer.Argument(metavar="DEVICE...", help="Device ids (or devices/ID).",
                                                 show_default=False)]
DescriptionOption = Annotated[str | None, typer.Option("--description", show_default=False,
                                                       help="What the group is for.")]
GroupFilterOption = Annotated[str | None, typer.Option(
    "--device-filter", metavar="FILTER", show_default=False,
    help="Dynamic groups: the ListDevices filter that decides membership, e.g. 'labels.floor = \"3\"'.")]

COLUMNS: out.Columns = (
    ("ID", lambda g: out.short_id(g.name)),
    ("DISPLAY NAME", lambda g: g.display_name),
    ("TYPE", lambda g: pb.GroupType.Name(g.type).removeprefix("GROUP_TYPE_")),
    ("FILTER", lambda g: g.filter),
    ("LABELS", lambda g: out.labels(g.labels)),
    ("CREATED", lambda g: out.when(g.create_time)),
)
DETAIL: out.Columns = (
    *COLUMNS[:5],
    ("DESCRIPTION", lambda g: g.description),
    *COLUMNS[5:],
    ("UPDATED", lambda g: out.when(g.update_time)),
    ("ETAG", lambda g: g.etag),
)
ADDED: out.Columns = (("ADDED", lambda r: " ".join(out.short_id(d) for d in r.added_devices) or "-"),)
REMOVED: out.Columns = (("REMOVED", lambda r: " ".join(out.short_id(d) for d in r.removed_devices) or "-"),)


def _name(value: str) -> str:
    return resource_name("groups", value, "ID")


def _devices(values: list[str]) -> list[str]:
    return [resource_name("devices", value, "DEVICE") for value in values]


def _stub(channel: Channel) -> GroupServiceAsyncStub:
    return grp_grpc.GroupServiceStub(channel)


@app.command("create")
def create_group(
    display_name: Annotated[str, typer.Option("--display-name", show_default=False, help="Human-readable name.")],
    group_id: Annotated[str, typer.Option("--id", metavar="ID", help="Id to use. Default: generated.")] = "",
    kind: Annotated[Kind, typer.Option("--type", help="static: explicit members; dynamic: --device-filter.")]
    = Kind.static,
    device_filter: GroupFilterOption = None, description: DescriptionOption = None, label: LabelsOption = None,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Create a group (needs an operator token)."""
    group_type = pb.GROUP_TYPE_DYNAMIC if kind is Kind.dynamic else pb.GROUP_TYPE_STATIC
    new = pb.Group(display_name=display_name, description=description or "", type=group_type,
                   filter=device_filter or "", labels=parse_labels(label))
    request = grp.CreateGroupRequest(group_id=group_id, group=new)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).CreateGroup, request, output, DETAIL)


@app.command("list")
def list_groups(
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the tenant's groups."""
    show_list(connection(grpc, token, timeout, data_dir), "groups", lambda c: _stub(c).ListGroups,
              grp.ListGroupsRequest, Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)


@app.command("get")
def get_group(
    group: GroupArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Show one group, with its etag."""
    request = grp.GetGroupRequest(name=_name(group))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).GetGroup, request, output, DETAIL)


@app.command("update")
def update_group(
    group: GroupArg,
    display_name: DisplayNameOption = None, description: DescriptionOption = None,
    device_filter: GroupFilterOption = None, label: ReplaceLabelsOption = None, clear_labels: ClearLabelsOption = False,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Change the fields given as options, and only those (the type of a group never changes)."""
    changed = pb.Group(name=_name(group), etag=etag)
    mask = update_mask(changed, {"display_name": display_name, "description": description, "filter": device_filter},
                       label, clear_labels, None,
                       "--display-name, --description, --device-filter, --label, --clear-labels")
    request = grp.UpdateGroupRequest(group=changed)
    request.update_mask.paths.extend(mask)
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).UpdateGroup, request, output, DETAIL)


@app.command("delete")
def delete_group(
    group: GroupArg,
    etag: EtagOption = "",
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Delete a group. Its devices stay; only the memberships go."""
    request = grp.DeleteGroupRequest(name=_name(group), etag=etag)
    delete(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).DeleteGroup, request, output)


@app.command("add-members")
def add_members(
    group: GroupArg, device: DevicesArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Add devices to a static group, all or none (devices already in it are skipped)."""
    request = grp.AddGroupMembersRequest(group=_name(group), devices=_devices(device))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).AddGroupMembers, request, output, ADDED)


@app.command("remove-members")
def remove_members(
    group: GroupArg, device: DevicesArg,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Remove devices from a static group (devices that are not members are ignored)."""
    request = grp.RemoveGroupMembersRequest(group=_name(group), devices=_devices(device))
    show(connection(grpc, token, timeout, data_dir), lambda c: _stub(c).RemoveGroupMembers, request, output,
         REMOVED)


@app.command("members")
def list_members(
    group: GroupArg,
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List a group's devices (a dynamic group's are resolved from its filter now)."""
    show_list(connection(grpc, token, timeout, data_dir), "devices", lambda c: _stub(c).ListGroupMembers,
              partial(grp.ListGroupMembersRequest, group=_name(group)),
              Listing(filter_, order_by, page_size, page_token, all_pages), output, devices.COLUMNS)


@app.command("of-device")
def device_groups(
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="Device id (or devices/ID).", show_default=False)],
    filter_: FilterOption = "", order_by: OrderByOption = "", page_size: PageSizeOption = 0,
    page_token: PageTokenOption = "", all_pages: AllOption = False,
    output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """List the groups a device is in: static groups that list it and dynamic groups whose filter matches it."""
    show_list(connection(grpc, token, timeout, data_dir), "groups", lambda c: _stub(c).ListDeviceGroups,
              partial(grp.ListDeviceGroupsRequest, device=resource_name("devices", device, "DEVICE")),
              Listing(filter_, order_by, page_size, page_token, all_pages), output, COLUMNS)
