"""The ingest service's settings (MUSTER_INGEST_* on top of the shared MUSTER_* ones)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from muster.runtime.config import ServiceSettings


class IngestSettings(ServiceSettings):
    """Limits, batching and retention of telemetry and device logs."""

    ingest_max_payload_bytes: int = Field(64 * 1024, ge=1024, description="Largest accepted message.")
    ingest_max_batch_entries: int = Field(1000, ge=1, description="Most entries in one batch array.")
    ingest_max_future_seconds: float = Field(
        300.0, ge=0, description="A `ts` further ahead of the receive time than this is refused.")
    ingest_max_past_days: int = Field(
        7, ge=1, description="A `ts` older than this is refused (partitions exist for the whole window).")
    ingest_retention_days: int = Field(30, ge=1, description="Telemetry older than this is dropped (by partition).")
    ingest_log_retention_days: int = Field(14, ge=1, description="Device logs older than this are dropped.")
    ingest_tenant_retention_days: dict[str, int] = Field(
        default_factory=dict,
        description='Shorter retention for some tenants, JSON: {"acme": 7}; capped by ingest_retention_days.')
    ingest_partitions_ahead_days: int = Field(3, ge=1, description="Daily partitions created ahead of today.")
    ingest_maintenance_interval_seconds: float = Field(3600.0, gt=0,
                                                       description="How often partitions/retention run.")
    ingest_batch_max_messages: int = Field(2000, ge=1, description="Messages written per COPY batch at most.")
    ingest_batch_max_wait_seconds: float = Field(0.05, gt=0, description="Longest a message waits for its batch.")
    ingest_max_ack_pending: int = Field(20000, ge=1, description="Unacked messages in flight per consumer.")
    ingest_ack_wait_seconds: float = Field(30.0, gt=0, description="Redelivery after this long without an ack.")
    ingest_rate_per_second: float = Field(50.0, gt=0, description="Sustained messages/s allowed per device.")
    ingest_rate_burst: float = Field(200.0, ge=1, description="Messages a device may send in a burst.")
    ingest_rate_notice_seconds: float = Field(
        60.0, gt=0, description="A rate-limited device is told at most once per this window.")
    ingest_profile_ttl_seconds: float = Field(5.0, gt=0,
                                              description="How long a cached device profile is trusted.")
    ingest_unknown_device_retries: int = Field(
        3, ge=1, description="Deliveries of a message from a device not (yet) in the projection before "
                             "it is refused (the projection may lag the registry by a moment).")
    ingest_latest_notify_interval_seconds: float = Field(
        5.0, gt=0, description="How often changed latest values go to the registry (LatestTelemetryChanged "
                               "events): a device appears at most once per interval, however fast it sends.")
    ingest_latest_notify_max_readings: int = Field(
        1000, ge=1, description="Most readings in one LatestTelemetryChanged event.")

    @property
    def max_future(self) -> timedelta:
        return timedelta(seconds=self.ingest_max_future_seconds)

    @property
    def max_past(self) -> timedelta:
        """Never older than the shortest retention: partitions older than it are dropped."""
        return timedelta(days=min(self.ingest_max_past_days, self.ingest_retention_days,
                                  self.ingest_log_retention_days))
