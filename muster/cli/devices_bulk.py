"""`muster devices import` and `muster devices export`: the tenant's fleet as CSV, streamed both ways.

The CSV format is in docs/operations.md ("Bulk import/export"). Import needs an operator token,
export a viewer token.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from muster.cli import output as out
from muster.cli.client import Session, fail, run
from muster.cli.options import (
    CONNECTION_PANEL,
    DataDirOption,
    GrpcOption,
    Output,
    OutputOption,
    TokenOption,
    connection,
)
from muster.registry.v1 import bulk_service_pb2 as bulk
from muster.registry.v1 import bulk_service_pb2_grpc as bulk_grpc

BULK_TIMEOUT = 600.0
CHUNK = 64 * 1024

FileArg = Annotated[Path, typer.Argument(
    metavar="FILE", exists=True, dir_okay=False, readable=True, show_default=False,
    help="CSV with a header row: serial (the key), display_name, site, template, labels (k=v;k=v), notes, "
         "latitude, longitude, altitude; name and state (as export writes them) are read-only.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Check every row against the fleet and report what would happen; write nothing.")]
ExportFilterOption = Annotated[str, typer.Option(
    "--filter", metavar="EXPR", help="The `devices list` filter, e.g. 'labels.floor = \"3\"'; default: all.")]
BulkTimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS", rich_help_panel=CONNECTION_PANEL,
    help="Deadline of the whole transfer.")]

_OUTCOME = {bulk.IMPORT_OUTCOME_CREATED: "created", bulk.IMPORT_OUTCOME_UPDATED: "updated",
            bulk.IMPORT_OUTCOME_UNCHANGED: "unchanged", bulk.IMPORT_OUTCOME_ERROR: "error"}


async def _chunks(path: Path, dry_run: bool) -> AsyncIterator[bulk.ImportDevicesRequest]:
    yield bulk.ImportDevicesRequest(validate_only=dry_run)
    with path.open("rb") as source:
        while data := source.read(CHUNK):
            yield bulk.ImportDevicesRequest(csv={"data": data, "content_type": "text/csv"})


def summary(report: bulk.ImportDevicesResponse) -> list[str]:
    """The counts, then one line per problem: `row 7 (SN-7): labels: ...`."""
    verb = "would be " if report.validate_only else ""
    lines = [f"{'dry run: ' if report.validate_only else ''}{report.rows} rows: {report.created} {verb}created, "
             f"{report.updated} {verb}updated, {report.unchanged} unchanged, {report.errors} with errors"]
    for result in report.results:
        if result.outcome == bulk.IMPORT_OUTCOME_ERROR:
            serial = f" ({result.serial})" if result.serial else ""
            problems = "; ".join(f"{e.column}: {e.reason}" if e.column else e.reason for e in result.errors)
            lines.append(f"row {result.row}{serial}: {problems}")
    return lines


def import_devices(
    file: FileArg, dry_run: DryRunOption = False, output: OutputOption = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: BulkTimeoutOption = BULK_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Create or update devices from a CSV file, streamed (serial is the key: re-importing creates no duplicates).

    Rows with problems are reported (row, column, reason) and skipped; every valid row is written.
    Exits 1 when any row had a problem.
    """

    async def work(session: Session) -> bulk.ImportDevicesResponse:
        stub = bulk_grpc.DeviceBulkServiceStub(session.channel)
        response: bulk.ImportDevicesResponse = await stub.ImportDevices(_chunks(file, dry_run),
                                                                         **session.call_options())
        return response

    report = run(connection(grpc, token, timeout, data_dir), work)
    if output is Output.json:
        out.emit_json(out.to_dict(report))
    else:
        lines = summary(report)
        typer.echo(lines[0])
        for line in lines[1:]:
            typer.echo(line, err=True)
    if report.errors:
        fail([], code=1)


def export_devices(
    filter_: ExportFilterOption = "",
    grpc: GrpcOption = None, token: TokenOption = None, timeout: BulkTimeoutOption = BULK_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Write the tenant's devices (or those matching --filter) to stdout as CSV: `> fleet.csv`.

    The file imports back unchanged, so it doubles as a backup and as a template for bulk edits.
    """

    async def work(session: Session) -> None:
        stub = bulk_grpc.DeviceBulkServiceStub(session.channel)
        async for chunk in stub.ExportDevices(bulk.ExportDevicesRequest(filter=filter_), **session.call_options()):
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()

    run(connection(grpc, token, timeout, data_dir), work)
