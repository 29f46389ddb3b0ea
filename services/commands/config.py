"""The commands service's settings (MUSTER_COMMANDS_* on top of the shared MUSTER_* ones)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from muster.runtime.config import ServiceSettings
from services.commands.domain import RetryPolicy
from services.commands.limits import Limits


class CommandsSettings(ServiceSettings):
    """Defaults a create request may override, and the limits it must stay within."""

    commands_default_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long a command may wait for delivery unless the request says otherwise.")
    commands_default_delivery_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the device has to acknowledge each send.")
    commands_default_execution_timeout_seconds: float = Field(
        60.0, gt=0, description="How long the device has to report a result, unless the request or the "
                                "template's command definition (default_timeout) says otherwise.")
    commands_default_max_attempts: int = Field(3, ge=1, le=10, description="Sends before 'not acknowledged'.")
    commands_default_initial_backoff_seconds: float = Field(1.0, gt=0, description="Pause after the first "
                                                                                   "unacknowledged send.")
    commands_default_backoff_multiplier: float = Field(2.0, ge=1, description="Growth of the pause per send.")
    commands_default_max_backoff_seconds: float = Field(30.0, gt=0, description="Longest pause between sends.")
    commands_max_ttl_seconds: float = Field(7 * 86400.0, gt=0, description="Longest time to live a request may ask.")
    commands_max_timeout_seconds: float = Field(86400.0, gt=0, description="Longest delivery/execution timeout.")
    commands_max_parameters_bytes: int = Field(16 * 1024, ge=256, description="Largest parameters document (JSON).")
    commands_wait_poll_seconds: float = Field(
        5.0, gt=0, description="WaitCommand re-reads the command at least this often, in case a NOTIFY was lost "
                               "(e.g. its listening connection dropped).")
    # delivery (services/commands/delivery_service.py)
    commands_timer_batch_size: int = Field(
        50, ge=1, le=1000, description="Due commands one timer pass claims (and holds locked) at most.")
    commands_timer_poll_seconds: float = Field(
        5.0, gt=0, description="Longest sleep of the timer worker, should a due-timer NOTIFY be lost.")
    commands_reply_batch_max_messages: int = Field(100, ge=1, description="Device replies applied per transaction.")
    commands_reply_batch_max_wait_seconds: float = Field(
        0.005, ge=0, description="How long a reply waits for others to share its transaction.")
    commands_publish_ack_timeout_seconds: float = Field(
        5.0, gt=0, description="How long a publish to a device waits for the MQTT server's PUBACK (a failed "
                               "publish is sent again at the acknowledgement timeout).")

    def limits(self) -> Limits:
        return Limits(
            default_ttl=timedelta(seconds=self.commands_default_ttl_seconds),
            default_delivery_timeout=timedelta(seconds=self.commands_default_delivery_timeout_seconds),
            default_execution_timeout=timedelta(seconds=self.commands_default_execution_timeout_seconds),
            default_retry=RetryPolicy(
                max_attempts=self.commands_default_max_attempts,
                initial_backoff=timedelta(seconds=self.commands_default_initial_backoff_seconds),
                multiplier=self.commands_default_backoff_multiplier,
                max_backoff=timedelta(seconds=self.commands_default_max_backoff_seconds)),
            max_ttl=timedelta(seconds=self.commands_max_ttl_seconds),
            max_timeout=timedelta(seconds=self.commands_max_timeout_seconds),
            max_parameters_bytes=self.commands_max_parameters_bytes)
