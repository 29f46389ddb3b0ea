"""Settings every service process reads from its environment (MUSTER_*), as the launcher or a
Kubernetes manifest sets them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Plumbing settings shared by every service; a service may subclass to add its own."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_", extra="ignore")

    service_name: str = Field(description="Bounded context this process serves, e.g. 'registry'.")
    grpc_address: str = Field("127.0.0.1:50051", description="host:port the gRPC server binds.")
    metrics_address: str = Field("127.0.0.1:9464", description="host:port of the Prometheus endpoint.")
    database_url: SecretStr = Field(
        description="postgresql+asyncpg:// URL of the service's own role (not the tables' owner).")
    database_pool_size: int = Field(
        20, description="Pooled connections (as many again may open under bursts); size it to the calls in flight.")
    nats_url: SecretStr = Field(SecretStr("nats://127.0.0.1:4222"),
                                description="NATS URL, with the service user's credentials.")
    device_mqtt_url: SecretStr | None = Field(
        None, description="mqtt://user:password@host:port of the platform's own MQTT login, for services that "
                          "publish to devices (retained twin state, commands); unset elsewhere.")
    system_nats_url: SecretStr | None = Field(
        None, description="NATS URL of the system account user, for services that read NATS's system events.")
    token_secret_file: Path = Field(description="File holding the HMAC key operator tokens are signed with.")
    log_level: str = "info"
    log_format: str = Field("json", description="'json' for machines, 'console' for people.")
    shutdown_grace_seconds: float = Field(10.0, description="How long in-flight RPCs may finish on SIGTERM.")
    default_rpc_deadline_seconds: float = Field(
        30.0, description="Deadline for outgoing calls, and for incoming calls that bring none.")

    def token_secret(self) -> bytes:
        return self.token_secret_file.read_bytes().strip()
