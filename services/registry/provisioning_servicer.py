"""The gRPC edge of provisioning: proto in, command to a handler, proto out. No rules live here."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import grpc

from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc
from muster.runtime.context import current_principal
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from services.registry import commands as cmd
from services.registry.domain import DEVICE_ID_PATTERN, ID_PATTERN
from services.registry.mapping import device_to_proto
from services.registry.provisioning import TOKEN_ID_PATTERN, HardwareInfo
from services.registry.provisioning_handlers import CreateProvisioningToken, ProvisioningHandlers, RegisterDevice
from services.registry.provisioning_mapping import token_to_proto

Context = grpc.aio.ServicerContext[Any, Any]


def _token_id(name: str) -> str:
    return parse_name(name, "provisioningTokens", TOKEN_ID_PATTERN)


def _ref(value: str, collection: str, field: str) -> str | None:
    return parse_name(value, collection, ID_PATTERN, field=field) if value else None


class ProvisioningServicer(prov_grpc.ProvisioningServiceServicer):
    def __init__(self, handlers: ProvisioningHandlers) -> None:
        self._h = handlers

    async def CreateProvisioningToken(self, request: prov.CreateProvisioningTokenRequest,
                                      context: Context) -> ppb.ProvisioningToken:
        t = request.provisioning_token
        token, secret = await self._h.create_token(current_principal(), CreateProvisioningToken(
            display_name=t.display_name, site_id=_ref(t.site, "sites", "provisioning_token.site"),
            template_id=_ref(t.template, "templates", "provisioning_token.template"), labels=dict(t.labels),
            max_uses=t.max_uses, claim_existing=t.claim_existing,
            expire_time=t.expire_time.ToDatetime(tzinfo=UTC) if t.HasField("expire_time") else None,
            ttl=t.ttl.ToTimedelta() if t.HasField("ttl") else None))
        return token_to_proto(token, token.create_time, secret=secret)

    async def GetProvisioningToken(self, request: prov.GetProvisioningTokenRequest,
                                   context: Context) -> ppb.ProvisioningToken:
        token = await self._h.get_token(current_principal(), _token_id(request.name))
        return token_to_proto(token, self._h.now())

    async def ListProvisioningTokens(self, request: prov.ListProvisioningTokensRequest,
                                     context: Context) -> prov.ListProvisioningTokensResponse:
        params = cmd.ListParams(page_size=request.page_size, page_token=request.page_token, filter=request.filter,
                                order_by=request.order_by)
        tokens, next_token = await self._h.list_tokens(current_principal(), params)
        now = self._h.now()
        return prov.ListProvisioningTokensResponse(provisioning_tokens=[token_to_proto(t, now) for t in tokens],
                                                   next_page_token=next_token)

    async def RevokeProvisioningToken(self, request: prov.RevokeProvisioningTokenRequest,
                                      context: Context) -> ppb.ProvisioningToken:
        token = await self._h.revoke_token(current_principal(), _token_id(request.name))
        return token_to_proto(token, self._h.now())

    async def RegisterDevice(self, request: prov.RegisterDeviceRequest,
                             context: Context) -> prov.RegisterDeviceResponse:
        hw = request.hardware
        registration = await self._h.register_device(RegisterDevice(
            provisioning_token=request.provisioning_token, serial=request.serial, display_name=request.display_name,
            hardware=HardwareInfo(manufacturer=hw.manufacturer, model=hw.model,
                                  hardware_revision=hw.hardware_revision, firmware_version=hw.firmware_version)))
        device = registration.device
        return prov.RegisterDeviceResponse(
            device=device_to_proto(device), device_id=device.id, device_secret=registration.device_secret,
            claimed=registration.claimed,
            mqtt=prov.MqttConnection(host=registration.mqtt.host, port=registration.mqtt.port, username=device.id,
                                     client_id=device.id, topic_prefix=registration.topic_prefix))

    async def RotateDeviceSecret(self, request: prov.RotateDeviceSecretRequest,
                                 context: Context) -> prov.RotateDeviceSecretResponse:
        device_id = parse_name(request.name, "devices", DEVICE_ID_PATTERN)
        grace = request.grace_period.ToTimedelta() if request.HasField("grace_period") else timedelta(0)
        rotation = await self._h.rotate_secret(current_principal(), device_id, grace)
        return prov.RotateDeviceSecretResponse(
            device=rotation.device.name, device_secret=rotation.device_secret,
            previous_secrets_expire_time=timestamp_of(rotation.previous_secrets_expire_time),
            valid_secret_count=rotation.valid_secret_count)
