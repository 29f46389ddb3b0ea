"""Provisioning tokens and device credentials to protobuf (responses and event payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.runtime.timestamps import timestamp_of
from services.registry.domain import Device, etag_of
from services.registry.provisioning import DeviceSecret, HardwareInfo, ProvisioningToken


def token_to_proto(token: ProvisioningToken, now: datetime, *, secret: str = "") -> ppb.ProvisioningToken:
    """`secret` is given only for the response of the create call."""
    message = ppb.ProvisioningToken(
        name=token.name, display_name=token.display_name, site=f"sites/{token.site_id}" if token.site_id else "",
        template=f"templates/{token.template_id}" if token.template_id else "", labels=dict(token.labels),
        max_uses=token.max_uses, use_count=token.use_count, claim_existing=token.claim_existing,
        expire_time=timestamp_of(token.expire_time), state=ppb.ProvisioningTokenState.ValueType(int(token.state(now))),
        create_time=timestamp_of(token.create_time), secret=secret, etag=etag_of(token.version))
    if token.revoke_time is not None:
        message.revoke_time.CopyFrom(timestamp_of(token.revoke_time))
    return message


def hardware_to_proto(hardware: HardwareInfo) -> ppb.HardwareInfo:
    return ppb.HardwareInfo(manufacturer=hardware.manufacturer, model=hardware.model,
                            hardware_revision=hardware.hardware_revision, firmware_version=hardware.firmware_version)


def credentials_changed(device: Device, secrets: Sequence[DeviceSecret], *,
                        revoke_sessions: bool) -> ev.DeviceCredentialsChanged:
    """The event the device edge checks MQTT logins against: every hash valid now, with its expiry."""
    hashes = []
    for secret in secrets:
        entry = ev.DeviceSecretHash(hmac_sha256=secret.secret_hash)
        if secret.expire_time is not None:
            entry.expire_time.CopyFrom(timestamp_of(secret.expire_time))
        hashes.append(entry)
    return ev.DeviceCredentialsChanged(device=device.name, secrets=hashes, revoke_sessions=revoke_sessions)
