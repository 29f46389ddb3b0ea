"""The ingest gRPC edge: proto in, query to the handlers, proto out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Value as ProtoValue
from google.protobuf.timestamp_pb2 import Timestamp

from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc
from muster.runtime.context import current_principal
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from services.ingest.handlers import TelemetryHandlers
from services.ingest.queries import DEVICE_ID_PATTERN, Bucket, PointValue, Value, build_query

Context = grpc.aio.ServicerContext[Any, Any]


def time_of(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _value(value: Value | None) -> ProtoValue:
    proto = ProtoValue()
    if isinstance(value, bool):
        proto.bool_value = value
    elif isinstance(value, float | int):
        proto.number_value = float(value)
    elif isinstance(value, str):
        proto.string_value = value
    else:
        proto.null_value = 0  # type: ignore[assignment]
    return proto


def point_to_proto(point: PointValue) -> tel.TelemetryPoint:
    return tel.TelemetryPoint(metric=point.metric, time=timestamp_of(point.time), value=_value(point.value))


def bucket_to_proto(bucket: Bucket) -> tel.TelemetryBucket:
    proto = tel.TelemetryBucket(metric=bucket.metric, start_time=timestamp_of(bucket.start), count=bucket.count,
                                first=_value(bucket.first), last=_value(bucket.last))
    for name in ("avg", "min", "max", "sum"):
        value = getattr(bucket, name)
        if value is not None:
            setattr(proto, name, value)
    return proto


class TelemetryServicer(tel_grpc.TelemetryServiceServicer):
    def __init__(self, handlers: TelemetryHandlers) -> None:
        self._h = handlers

    async def QueryTelemetry(self, request: tel.QueryTelemetryRequest, context: Context) -> tel.QueryTelemetryResponse:
        device_id = parse_name(request.device, "devices", DEVICE_ID_PATTERN, field="device")
        width = request.bucket_width
        query = build_query(
            device_id=device_id, metrics=list(request.metrics),
            start=time_of(request.start_time, request.HasField("start_time")),
            end=time_of(request.end_time, request.HasField("end_time")),
            page_size=request.page_size, page_token=request.page_token,
            bucket=timedelta(seconds=width.seconds, microseconds=width.nanos // 1000)
            if request.HasField("bucket_width") else None,
            aggregations=list(request.aggregations), now=self._h.now())
        result = await self._h.query(current_principal(), query)
        response = tel.QueryTelemetryResponse(points=[point_to_proto(p) for p in result.points],
                                              next_page_token=result.next_page_token)
        keep = {a.name.lower() for a in query.aggregations}
        for bucket in result.buckets:
            proto = bucket_to_proto(bucket)
            for name in ("avg", "min", "max", "sum", "first", "last"):
                if name not in keep:
                    proto.ClearField(name)
            if "count" not in keep:
                proto.count = 0
            response.buckets.append(proto)
        return response

    async def ListLatestTelemetry(self, request: tel.ListLatestTelemetryRequest,
                                  context: Context) -> tel.ListLatestTelemetryResponse:
        device_id = parse_name(request.device, "devices", DEVICE_ID_PATTERN, field="device")
        values, token = await self._h.latest(current_principal(), device_id, request.page_size, request.page_token)
        return tel.ListLatestTelemetryResponse(values=[point_to_proto(v) for v in values], next_page_token=token)
