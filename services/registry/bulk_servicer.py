"""The gRPC edge of bulk import/export: chunks in, report out; devices in, CSV chunks out."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
from google.api.httpbody_pb2 import HttpBody

from muster.registry.v1 import bulk_service_pb2 as bulk
from muster.registry.v1 import bulk_service_pb2_grpc as bulk_grpc
from muster.runtime.context import current_principal
from services.registry.bulk import Outcome, RowResult
from services.registry.bulk_handlers import BulkHandlers, ImportReport

Context = grpc.aio.ServicerContext[Any, Any]
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
_EXPORT_CHUNK = 64 * 1024


def _result(result: RowResult) -> bulk.ImportRowResult:
    return bulk.ImportRowResult(
        row=result.row, serial=result.serial, device=f"devices/{result.device_id}" if result.device_id else "",
        outcome=bulk.ImportOutcome.ValueType(int(result.outcome)),
        errors=[bulk.ImportRowError(column=v.field, reason=v.description) for v in result.errors])


def report_to_proto(report: ImportReport) -> bulk.ImportDevicesResponse:
    return bulk.ImportDevicesResponse(
        validate_only=report.validate_only, rows=len(report.results), created=report.count(Outcome.CREATED),
        updated=report.count(Outcome.UPDATED), unchanged=report.count(Outcome.UNCHANGED),
        errors=report.count(Outcome.ERROR), results=[_result(r) for r in report.results])


class DeviceBulkServicer(bulk_grpc.DeviceBulkServiceServicer):
    def __init__(self, handlers: BulkHandlers) -> None:
        self._h = handlers

    async def ImportDevices(self, request_iterator: AsyncIterator[bulk.ImportDevicesRequest],
                            context: Context) -> bulk.ImportDevicesResponse:
        stream = aiter(request_iterator)
        first = await anext(stream, bulk.ImportDevicesRequest())

        async def chunks() -> AsyncIterable[bytes]:
            yield first.csv.data
            async for message in stream:
                yield message.csv.data

        report = await self._h.import_devices(current_principal(), chunks(), validate_only=first.validate_only)
        return report_to_proto(report)

    async def ExportDevices(self, request: bulk.ExportDevicesRequest, context: Context) -> AsyncIterator[HttpBody]:
        pending: list[str] = []
        size = 0
        async for text in self._h.export_devices(current_principal(), request.filter):
            pending.append(text)
            size += len(text)
            if size >= _EXPORT_CHUNK:
                yield HttpBody(content_type=CSV_CONTENT_TYPE, data="".join(pending).encode())
                pending, size = [], 0
        if pending or size == 0:
            yield HttpBody(content_type=CSV_CONTENT_TYPE, data="".join(pending).encode())
