"""the device edge's projection of device credentials and lifecycle

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from muster.runtime.db import tenant_policy_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    """CREATE TABLE ingest.edge_devices (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    state smallint NOT NULL DEFAULT 0,
    deleted boolean NOT NULL DEFAULT false,
    secrets jsonb NOT NULL DEFAULT '[]'::jsonb,
    state_time timestamptz,
    credentials_time timestamptz
)""",
    """CREATE TABLE ingest.edge_connections (
    server_id text NOT NULL,
    client_id bigint NOT NULL,
    device_id text NOT NULL,
    tenant_id text NOT NULL,
    connected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT edge_connections_pkey PRIMARY KEY (server_id, client_id)
)""",
    "CREATE INDEX edge_connections_by_device ON ingest.edge_connections (device_id)",
    "CREATE INDEX edge_connections_by_expiry ON ingest.edge_connections (expires_at)",
)


def upgrade() -> None:
    for statement in _TABLES:
        op.execute(statement)
    for table in ("edge_devices", "edge_connections"):
        for statement in tenant_policy_sql("ingest", table):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE ingest.edge_connections")
    op.execute("DROP TABLE ingest.edge_devices")
