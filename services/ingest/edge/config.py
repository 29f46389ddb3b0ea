"""The edge's settings: MUSTER_EDGE_* (set by the launcher or the Kubernetes manifests) on top of the
shared MUSTER_* ones."""

from __future__ import annotations

from pydantic import Field, SecretStr

from muster.runtime.config import ServiceSettings
from muster.runtime.secrets import parse_device_secret_key


class EdgeSettings(ServiceSettings):
    device_secret_key: SecretStr = Field(
        description="Hex HMAC key device secrets are hashed with (the registry's MUSTER_DEVICE_SECRET_KEY).")
    edge_issuer_seed: SecretStr = Field(
        description="Account nkey seed (SA…) the callout answers and device JWTs are signed with; its public "
                    "key is the `issuer` of the NATS server's auth_callout block.")
    edge_system_nats_url: SecretStr = Field(
        description="NATS URL of a system-account user: kicks are system requests.")
    edge_device_account: str = Field("MUSTER", description="The NATS account devices join (their JWT's aud).")
    edge_jwt_ttl_seconds: int = Field(
        6 * 3600, ge=60, description="Lifetime of a device's user JWT: the server closes the connection then "
                                     "and the device reconnects (and is checked again).")
    edge_max_batch: int = Field(500, ge=1, description="Most callouts decided in one database transaction.")
    edge_prune_interval_seconds: float = Field(
        300.0, gt=0, description="How often records of expired connections are dropped.")

    def device_secret_key_bytes(self) -> bytes:
        return parse_device_secret_key(self.device_secret_key.get_secret_value())
