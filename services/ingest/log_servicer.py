"""The device-log gRPC edge: proto in, query to the handlers, proto out."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from muster.ingest.v1 import log_service_pb2 as logs
from muster.ingest.v1 import log_service_pb2_grpc as logs_grpc
from muster.runtime.context import current_principal
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from services.ingest.handlers import TelemetryHandlers
from services.ingest.log_queries import StoredLog, build_log_query
from services.ingest.queries import DEVICE_ID_PATTERN
from services.ingest.servicer import Context, time_of


def entry_to_proto(entry: StoredLog) -> logs.DeviceLogEntry:
    fields = Struct()
    fields.update(dict(entry.fields))
    return logs.DeviceLogEntry(time=timestamp_of(entry.time), level=int(entry.level),  # type: ignore[arg-type]
                               message=entry.message, fields=fields)


class DeviceLogServicer(logs_grpc.DeviceLogServiceServicer):
    def __init__(self, handlers: TelemetryHandlers) -> None:
        self._h = handlers

    async def ListDeviceLogs(self, request: logs.ListDeviceLogsRequest,
                             context: Context) -> logs.ListDeviceLogsResponse:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        query = build_log_query(
            device_id=device_id, min_level=request.min_level,
            start=time_of(request.start_time, request.HasField("start_time")),
            end=time_of(request.end_time, request.HasField("end_time")), text=request.text,
            size=request.page_size, page_token=request.page_token, now=self._h.now())
        entries, token = await self._h.logs(current_principal(), query)
        return logs.ListDeviceLogsResponse(entries=[entry_to_proto(e) for e in entries], next_page_token=token)


