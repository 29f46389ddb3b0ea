"""The connectivity gRPC edge: proto in, query to the handlers, proto out. No rules live here."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from muster.twin.v1 import connectivity_service_pb2 as pb
from muster.twin.v1 import connectivity_service_pb2_grpc as pb_grpc
from services.twin.connectivity_handlers import ConnectivityHandlers, ConnectivityView, HealthView
from services.twin.health import FIELDS as HEALTH_FIELDS
from services.twin.twin import DEVICE_ID_PATTERN

Context = grpc.aio.ServicerContext[Any, Any]


def device_of(name: str, suffix: str) -> str:
    """"devices/{device}/<suffix>" -> device id, or INVALID_ARGUMENT naming the field `name`."""
    match = re.fullmatch(rf"devices/([^/]+)/{suffix}", name)
    if match is None or not DEVICE_ID_PATTERN.match(match.group(1)):
        raise InvalidArgument.field("name", f"{name!r} is not of the form devices/{{device}}/{suffix}")
    return match.group(1)


def connectivity_to_proto(device_id: str, view: ConnectivityView) -> pb.DeviceConnectivity:
    state = view.state
    proto = pb.DeviceConnectivity(
        name=f"devices/{device_id}/connectivity", presence=int(state.presence),  # type: ignore[arg-type]
        reason=state.reason, description=state.describe(),
        stale_after=Duration(seconds=int(view.stale_after.total_seconds())),
        disconnects_24h=view.counts["24h"], disconnects_72h=view.counts["72h"],
        abnormal_disconnects_24h=view.counts["abnormal_24h"], abnormal_disconnects_72h=view.counts["abnormal_72h"])
    if state.since:
        proto.since.CopyFrom(timestamp_of(state.since))
    if state.last_seen:
        proto.last_seen.CopyFrom(timestamp_of(state.last_seen))
    if state.session:
        s = state.session
        proto.session.CopyFrom(pb.ConnectionSession(
            session_id=s.session_id, client_id=s.client_id, remote_address=s.remote_address, protocol=s.protocol,
            connect_time=timestamp_of(s.connected_at), disconnect_reason=int(s.reason)))  # type: ignore[arg-type]
        if s.disconnected_at:
            proto.session.disconnect_time.CopyFrom(timestamp_of(s.disconnected_at))
    return proto


def health_to_proto(device_id: str, view: HealthView) -> pb.DeviceHealth:
    proto = pb.DeviceHealth(name=f"devices/{device_id}/health", status=int(view.assessment.status),  # type: ignore[arg-type]
                            findings=list(view.assessment.findings))
    for key, value in view.values.items():
        if key in HEALTH_FIELDS:
            setattr(proto, key, value)
    if view.report_time:
        proto.report_time.CopyFrom(timestamp_of(view.report_time))
    return proto


def event_to_proto(row: Any) -> pb.ConnectionEvent:
    return pb.ConnectionEvent(kind=row.kind, time=timestamp_of(row.time), session_id=row.session_id,
                              client_id=row.client_id, remote_address=row.remote_address, protocol=row.protocol,
                              reason=row.reason, detail=row.detail)


class ConnectivityServicer(pb_grpc.ConnectivityServiceServicer):
    def __init__(self, handlers: ConnectivityHandlers) -> None:
        self._h = handlers

    async def GetDeviceConnectivity(self, request: pb.GetDeviceConnectivityRequest,
                                    context: Context) -> pb.DeviceConnectivity:
        device_id = device_of(request.name, "connectivity")
        return connectivity_to_proto(device_id, await self._h.connectivity(current_principal(), device_id))

    async def GetDeviceHealth(self, request: pb.GetDeviceHealthRequest, context: Context) -> pb.DeviceHealth:
        device_id = device_of(request.name, "health")
        return health_to_proto(device_id, await self._h.health(current_principal(), device_id))

    async def ListConnectionEvents(self, request: pb.ListConnectionEventsRequest,
                                   context: Context) -> pb.ListConnectionEventsResponse:
        device_id = parse_name(request.parent, "devices", DEVICE_ID_PATTERN, field="parent")
        rows, token = await self._h.connection_events(
            current_principal(), device_id,
            start=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None,
            end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None,
            size=request.page_size, token=request.page_token, filter=request.filter)
        return pb.ListConnectionEventsResponse(events=[event_to_proto(r) for r in rows], next_page_token=token)
