"""The registry's own settings, on top of the shared plumbing (MUSTER_* environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from muster.runtime.config import ServiceSettings
from muster.runtime.secrets import parse_device_secret_key


class RegistrySettings(ServiceSettings):
    device_secret_key: SecretStr = Field(
        description="Hex key (>= 32 bytes) of the HMAC-SHA256 that device secrets and provisioning tokens are "
                    "stored as; the device edge checks MQTT logins with the same key.")
    mqtt_public_host: str = Field("127.0.0.1", description="MQTT host devices are told to connect to.")
    mqtt_public_port: int = Field(1883, ge=1, le=65535, description="MQTT port devices are told to connect to.")
    database_read_pool_size: int = Field(
        10, ge=1, description="Connections of the single-round-trip read pool (GetDevice), besides database_pool_size.")

    def device_secret_key_bytes(self) -> bytes:
        return parse_device_secret_key(self.device_secret_key.get_secret_value())
