"""What the registry commands have in common once their options are parsed: call one RPC and print the
resource, list (one page or all) and print the table, delete and say so, and build an update's mask.

Each typer command stays a declaration of its options and the request it builds, then hands over here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc

from muster.cli import output as out
from muster.cli.client import Connection, Session, fail, list_all, run
from muster.cli.options import Output, label_changes, parse_location
from muster.registry.v1 import group_resources_pb2 as gpb
from muster.registry.v1 import resources_pb2 as pb


class Named(Protocol):
    """A request that names one resource (every Delete*Request)."""

    @property
    def name(self) -> str: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp")
NamedReq = TypeVar("NamedReq", bound=Named)

Rpc = Callable[[grpc.aio.Channel], grpc.aio.UnaryUnaryMultiCallable[Req, Resp]]
"""Picks the method off a stub for the invocation's channel, e.g. `lambda c: SiteServiceStub(c).GetSite`."""


@dataclass(frozen=True)
class Listing:
    """The listing options of a list command, as given."""

    filter: str
    order_by: str
    page_size: int
    page_token: str
    all_pages: bool


def call(connection: Connection, rpc: Rpc[Req, Resp], request: Req) -> Resp:
    """One RPC on a fresh channel; a failure is printed and exits (see `client.run`)."""

    async def work(session: Session) -> Resp:
        return await session.call(rpc(session.channel), request)

    return run(connection, work)


def show(connection: Connection, rpc: Rpc[Req, Any], request: Req, output: Output, columns: out.Columns) -> None:
    """Call an RPC that answers with one resource, and print that."""
    out.emit_one(call(connection, rpc, request), output, columns)


def delete(connection: Connection, rpc: Rpc[NamedReq, Any], request: NamedReq, output: Output) -> None:
    """Call a Delete RPC, and say which resource (the request's `name`) is gone."""
    call(connection, rpc, request)
    out.emit_deleted(request.name, output)


def show_list(connection: Connection, key: str, rpc: Rpc[Req, Any], request: Callable[..., Req],
              listing: Listing, output: Output, columns: out.Columns) -> None:
    """Call a List RPC for one page, or with --all for every page, and print the items (the response's `key`)."""

    async def work(session: Session) -> tuple[list[Any], str]:
        method = rpc(session.channel)

        async def page(page_token: str) -> tuple[list[Any], str]:
            response = await session.call(method, request(
                page_size=listing.page_size, page_token=page_token, filter=listing.filter, order_by=listing.order_by))
            return list(getattr(response, key)), response.next_page_token

        return await list_all(page, listing.page_token, follow=listing.all_pages)

    items, next_page_token = run(connection, work)
    out.emit_list(key, items, next_page_token, output, columns)


def update_mask(changed: pb.Site | pb.Device | gpb.Group, fields: Mapping[str, Any], label: list[str] | None,
                clear_labels: bool, location: str | None, options: str) -> list[str]:
    """Set the fields given (not None), then labels and location, on `changed`; return their paths for the
    update mask. Exits with usage code 2 when nothing was given (`options` names what could have been)."""
    mask = [path for path, value in fields.items() if value is not None]
    for path in mask:
        setattr(changed, path, fields[path])
    if (labels := label_changes(label, clear_labels)) is not None:
        changed.labels.update(labels)
        mask.append("labels")
    if location is not None and not isinstance(changed, gpb.Group):
        changed.location.CopyFrom(parse_location(location))
        mask.append("location")
    if not mask:
        fail([f"error: nothing to change: give at least one of {options}"], code=2)
    return mask
