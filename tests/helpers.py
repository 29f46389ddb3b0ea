"""Shared helpers for tests against the running platform (the `platform` fixture from conftest):
connection URLs and credentials from its data dir, tenants with tokens, and rich gRPC errors."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from muster.launcher.layout import Layout
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc
from muster.runtime.auth import Role, TokenCodec

SERVICE = "registry"
SERVICE_ROLE = f"muster_{SERVICE}"
OWNER_ROLE = "muster_owner"
DATABASE = "muster"
RPC_TIMEOUT = 10.0
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class PlatformLike(Protocol):
    """What the conftest's `platform` fixture yields."""

    @property
    def endpoints(self) -> dict[str, Any]: ...

    @property
    def data_dir(self) -> Path: ...


def unique_id(prefix: str = "t") -> str:
    """A fresh tenant/site id (valid for ID_PATTERN), so tests never share rows."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def secrets(platform: PlatformLike) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(platform.data_dir) / "secrets.json").read_text())
    return data


def service_db_url(platform: PlatformLike) -> str:
    """The registry's own role: owns nothing, subject to row-level security."""
    password = secrets(platform)["postgres"]["services"][SERVICE]
    return f"postgresql+asyncpg://{SERVICE_ROLE}:{password}@{platform.endpoints['postgres']}/{DATABASE}"


def owner_db_url(platform: PlatformLike) -> str:
    password = secrets(platform)["postgres"]["owner"]
    return f"postgresql+asyncpg://{OWNER_ROLE}:{password}@{platform.endpoints['postgres']}/{DATABASE}"


def superuser_db_url(platform: PlatformLike) -> str:
    """For what only an administrator does to a database: e.g. cutting sessions, as a restart would."""
    password = secrets(platform)["postgres"]["superuser"]
    return f"postgresql+asyncpg://postgres:{password}@{platform.endpoints['postgres']}/postgres"


def service_nats_url(platform: PlatformLike) -> str:
    password = secrets(platform)["nats"]["services"][SERVICE]
    host = str(platform.endpoints["nats"]).removeprefix("nats://")
    return f"nats://{SERVICE_ROLE}:{password}@{host}"


def token_codec(platform: PlatformLike) -> TokenCodec:
    """Signs tokens exactly as the platform does (for tokens the API will not issue, e.g. expired ones)."""
    return TokenCodec(Layout(Path(platform.data_dir)).token_key.read_bytes().strip())


def expired_token(platform: PlatformLike, tenant: str, role: Role = Role.ADMIN) -> str:
    """Validly signed, expired an hour ago (well past the verifier's leeway)."""
    token, _ = token_codec(platform).issue(subject="expired", role=role, tenant=tenant, ttl=timedelta(minutes=5),
                                           now=datetime.now(UTC) - timedelta(hours=1, minutes=5))
    return token


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class TenantTokens:
    """A fresh tenant and a token per role in it."""

    id: str
    admin: str
    operator: str
    viewer: str

    @property
    def name(self) -> str:
        return f"tenants/{self.id}"


_ROLES = {Role.VIEWER: tok.ROLE_VIEWER, Role.OPERATOR: tok.ROLE_OPERATOR, Role.ADMIN: tok.ROLE_ADMIN,
          Role.PLATFORM_ADMIN: tok.ROLE_PLATFORM_ADMIN}


async def issue_token(channel: grpc.aio.Channel, issuer_token: str, *, tenant: str | None, role: Role,
                      subject: str = "test", ttl: timedelta | None = None) -> str:
    request = tok.IssueOperatorTokenRequest(tenant=f"tenants/{tenant}" if tenant else "", role=_ROLES[role],
                                            subject=subject)
    if ttl is not None:
        request.ttl.CopyFrom(Duration(seconds=int(ttl.total_seconds())))
    response = await tok_grpc.TokenServiceStub(channel).IssueOperatorToken(
        request, metadata=bearer(issuer_token), timeout=RPC_TIMEOUT)
    return response.token


async def create_tenant(channel: grpc.aio.Channel, platform_admin_token: str,
                        tenant_id: str | None = None) -> TenantTokens:
    """Create a tenant as platform admin, then issue an admin, operator and viewer token for it."""
    tenant_id = tenant_id or unique_id()
    await ten_grpc.TenantServiceStub(channel).CreateTenant(
        ten.CreateTenantRequest(tenant_id=tenant_id, tenant=pb.Tenant(display_name=f"Test {tenant_id}")),
        metadata=bearer(platform_admin_token), timeout=RPC_TIMEOUT)
    tokens = {role: await issue_token(channel, platform_admin_token, tenant=tenant_id, role=role,
                                      subject=f"{role.name.lower()}@{tenant_id}")
              for role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER)}
    return TenantTokens(tenant_id, tokens[Role.ADMIN], tokens[Role.OPERATOR], tokens[Role.VIEWER])


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status from the `grpc-status-details-bin` trailer (empty Status if absent)."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode("latin-1"))
    return status_pb2.Status()


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field -> description, from the rich status."""
    found: dict[str, str] = {}
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """ErrorInfo.reason from the rich status ("" if absent)."""
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""
