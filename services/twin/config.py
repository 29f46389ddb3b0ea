"""The twin service's settings (MUSTER_TWIN_* on top of the shared MUSTER_* ones)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from muster.runtime.config import ServiceSettings
from muster.runtime.device_inbox import UnknownDevices
from services.twin.documents import Limits


class TwinSettings(ServiceSettings):
    """Document limits, the device inbox and the pushes of desired state to devices."""

    twin_max_document_bytes: int = Field(
        32 * 1024, ge=256, description="Largest desired or reported document (compact JSON bytes).")
    twin_max_depth: int = Field(8, ge=1, description="Deepest nesting of objects/arrays in a document.")
    twin_batch_max_messages: int = Field(200, ge=1, description="Device messages handled per transaction at most.")
    twin_batch_max_wait_seconds: float = Field(
        0.005, gt=0, description="Longest a device message waits for its batch.")
    twin_max_ack_pending: int = Field(5000, ge=1, description="Unacked device messages in flight.")
    twin_ack_wait_seconds: float = Field(30.0, gt=0, description="Redelivery after this long without an ack.")
    twin_unknown_device_grace_seconds: float = Field(
        300.0, ge=0, description="How long a message from a device without a twin (yet) is delivered again "
                                 "before it is refused: the registry projection may lag (minutes after a bulk "
                                 "import of thousands of devices).")

    def unknown_devices(self) -> UnknownDevices:
        return UnknownDevices(timedelta(seconds=self.twin_unknown_device_grace_seconds))
    twin_push_sweep_interval_seconds: float = Field(
        1.0, gt=0, description="How often twins whose desired state was not sent yet are looked for (after a "
                               "crash, or while the MQTT server was away).")
    twin_push_timeout_seconds: float = Field(5.0, gt=0, description="Wait for the MQTT server's PUBACK.")
    # connectivity, presence and health (docs/operations.md)
    twin_stale_after_seconds: float = Field(
        300.0, gt=0, description="A connected device silent this long is STALE (unless its birth message "
                                 "announced a heartbeat_interval: then after two missed intervals).")
    twin_presence_sweep_interval_seconds: float = Field(
        5.0, gt=0, description="How often silent devices are looked for.")
    twin_last_seen_flush_seconds: float = Field(
        2.0, gt=0, description="last_seen from twin messages is written in one statement this often.")
    twin_reconcile_delay_seconds: float = Field(
        10.0, ge=0, description="After start, compare the connection log with the server's connections (CONNZ).")
    twin_reconcile_interval_seconds: float = Field(300.0, gt=0, description="And again this often.")
    twin_max_heartbeat_bytes: int = Field(4096, ge=256, description="Largest accepted heartbeat message.")
    twin_health_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Health thresholds over the defaults, JSON: {"battery": {"warning": 30, "critical": 15}}; '
                    "`below` marks fields where low values are bad.")

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.twin_max_document_bytes, max_depth=self.twin_max_depth)
