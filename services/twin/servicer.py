"""The twin's gRPC edge: proto in, command to a handler, proto out. No rules live here.

Over REST the etag may come as the If-Match header: Envoy's transcoder forwards HTTP headers as gRPC
metadata, so `if-match` is read when the request carries no etag field.
"""

from __future__ import annotations

import re
from typing import Any

import grpc

from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.twin.v1 import twin_resources_pb2 as pb
from muster.twin.v1 import twin_service_pb2 as svc
from muster.twin.v1 import twin_service_pb2_grpc as svc_grpc
from services.twin import mapping
from services.twin.handlers import Rollback, TwinHandlers, UpdateDesired
from services.twin.twin import DEVICE_ID_PATTERN

Context = grpc.aio.ServicerContext[Any, Any]
_TWIN_NAME = re.compile(r"^devices/([^/]+)/twin$")


def device_of_twin(name: str, field: str = "name") -> str:
    """"devices/{device}/twin" -> device id, or INVALID_ARGUMENT naming the field."""
    if not name:
        raise InvalidArgument.field(field, "is required, in the form devices/{device}/twin")
    match = _TWIN_NAME.match(name)
    if match is None:
        raise InvalidArgument.field(field, f"{name!r} is not of the form devices/{{device}}/twin")
    if not DEVICE_ID_PATTERN.match(match.group(1)):
        raise InvalidArgument.field(field, f"{match.group(1)!r} is not a valid device id")
    return match.group(1)


def etag_of(request_etag: str, context: Context) -> str:
    if request_etag:
        return request_etag
    for key, value in context.invocation_metadata() or ():
        if key == "if-match":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return ""


class TwinServicer(svc_grpc.TwinServiceServicer):
    def __init__(self, handlers: TwinHandlers) -> None:
        self._h = handlers

    async def GetTwin(self, request: svc.GetTwinRequest, context: Context) -> pb.Twin:
        twin = await self._h.get_twin(current_principal(), device_of_twin(request.name))
        return mapping.twin_to_proto(twin)

    async def UpdateDesired(self, request: svc.UpdateDesiredRequest, context: Context) -> pb.Twin:
        device_id = device_of_twin(request.name)
        command = UpdateDesired(device_id=device_id, patch=mapping.document_of(request.patch),
                                etag=etag_of(request.etag, context), force=request.force)
        return mapping.twin_to_proto(await self._h.update_desired(current_principal(), command))

    async def GetTwinDelta(self, request: svc.GetTwinDeltaRequest, context: Context) -> pb.TwinDelta:
        twin = await self._h.get_twin(current_principal(), device_of_twin(request.name))
        return mapping.delta_to_proto(twin, twin.delta())

    async def ListDesiredRevisions(self, request: svc.ListDesiredRevisionsRequest,
                                   context: Context) -> svc.ListDesiredRevisionsResponse:
        device_id = device_of_twin(request.parent, "parent")
        revisions, token = await self._h.list_revisions(current_principal(), device_id, size=request.page_size,
                                                        token=request.page_token)
        return svc.ListDesiredRevisionsResponse(revisions=[mapping.revision_to_proto(r) for r in revisions],
                                                next_page_token=token)

    async def RollbackDesired(self, request: svc.RollbackDesiredRequest, context: Context) -> pb.Twin:
        command = Rollback(device_id=device_of_twin(request.name), revision=request.revision,
                           etag=etag_of(request.etag, context), force=request.force)
        return mapping.twin_to_proto(await self._h.rollback(current_principal(), command))
