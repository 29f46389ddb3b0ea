"""What the CLI prints on stdout: plain-text columns for people, JSON with proto field names for scripts.

Tables are plain text (no colour, no box drawing) so they survive `grep`, `less` and copy-paste.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, TypeVar

import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from muster.cli.options import Output
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import transports_pb2 as tpb

M = TypeVar("M", bound=Message)

Columns = Sequence[tuple[str, Callable[[Any], str]]]
"""(header, cell) pairs; the same cells serve a table row and the field list of one resource."""


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def emit_json(content: Any) -> None:
    typer.echo(json.dumps(content, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def emit_one(message: M, output: Output, columns: Columns) -> None:
    """One resource: `FIELD  value` lines, or its JSON object."""
    if output is Output.json:
        emit_json(to_dict(message))
        return
    width = max(len(header) for header, _ in columns)
    for header, cell in columns:
        typer.echo(f"{header.ljust(width)}  {cell(message)}".rstrip())


def emit_list(key: str, items: Sequence[M], next_page_token: str, output: Output, columns: Columns) -> None:
    """A page (or all pages): a table, or `{key: [...], "next_page_token": ...}` like the API's response."""
    if output is Output.json:
        emit_json({key: [to_dict(item) for item in items], "next_page_token": next_page_token})
        return
    if items:
        typer.echo(table([header for header, _ in columns], [[cell(item) for _, cell in columns] for item in items]))
    else:
        typer.echo(f"no {key}", err=True)
    if next_page_token:
        typer.echo(f"more {key}: add --all, or --page-token {next_page_token}", err=True)


def emit_deleted(name: str, output: Output) -> None:
    if output is Output.json:
        emit_json({"deleted": name})
    else:
        typer.echo(f"deleted {name}")


def when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def labels(values: Mapping[str, str]) -> str:
    return ",".join(f"{key}={values[key]}" for key in sorted(values))


def location(message: Any) -> str:
    if not message.HasField("location"):
        return ""
    loc: pb.Location = message.location
    text = f"{loc.latitude:g}, {loc.longitude:g}"
    return f"{text}, {loc.altitude:g} m" if loc.altitude else text


def transports(device: pb.Device) -> str:
    """`MQTT/cellular iccid=8901...; MODBUS_TCP/ethernet`: protocol, link, and the SIM when there is one."""
    parts = []
    for t in device.transports:
        try:
            protocol = tpb.TransportProtocol.Name(t.protocol).removeprefix("TRANSPORT_PROTOCOL_")
        except ValueError:
            protocol = str(t.protocol)
        link = t.WhichOneof("link")
        text = f"{protocol}/{link}" if link else protocol
        parts.append(f"{text} iccid={t.cellular.iccid}" if link == "cellular" and t.cellular.iccid else text)
    return "; ".join(parts)


def device_state(state: pb.DeviceState.ValueType) -> str:
    """`ACTIVE` rather than `DEVICE_STATE_ACTIVE`; the number for a state newer than this CLI."""
    try:
        return pb.DeviceState.Name(state).removeprefix("DEVICE_STATE_")
    except ValueError:
        return str(state)


def short_id(name: str) -> str:
    """`devices/abc` -> `abc`: tables show ids, which every command accepts."""
    return name.rpartition("/")[2]
