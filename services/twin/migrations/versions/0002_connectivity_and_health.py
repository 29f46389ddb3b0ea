"""twin: connectivity log, presence and device health

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
    """CREATE TABLE twin.connectivity (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    presence smallint NOT NULL,
    reason text NOT NULL,
    since timestamptz,
    session_id text,
    client_id text,
    remote_address text,
    protocol text,
    connected_at timestamptz,
    disconnected_at timestamptz,
    disconnect_reason smallint NOT NULL DEFAULT 0,
    detail text NOT NULL DEFAULT '',
    last_seen timestamptz,
    will_at timestamptz,
    stale_after_seconds double precision
)""",
    "CREATE INDEX connectivity_online ON twin.connectivity (device_id) WHERE presence = 2",
    "CREATE INDEX connectivity_open_sessions ON twin.connectivity (session_id) WHERE disconnected_at IS NULL",
    """CREATE TABLE twin.connection_log (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    session_id text NOT NULL,
    kind smallint NOT NULL,
    time timestamptz NOT NULL,
    client_id text NOT NULL DEFAULT '',
    remote_address text NOT NULL DEFAULT '',
    protocol text NOT NULL DEFAULT '',
    reason smallint NOT NULL DEFAULT 0,
    detail text NOT NULL DEFAULT '',
    CONSTRAINT connection_log_pkey PRIMARY KEY (device_id, session_id, kind)
)""",
    "CREATE INDEX connection_log_by_time ON twin.connection_log (device_id, time)",
    """CREATE TABLE twin.device_health (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    report_time timestamptz NOT NULL,
    stream_seq bigint NOT NULL,
    health jsonb NOT NULL
)""",
)

_TENANT_OWNED = ("connectivity", "connection_log", "device_health")


def upgrade() -> None:
    for statement in _TABLES:
        op.execute(statement)
    for table in _TENANT_OWNED:
        for statement in tenant_policy_sql("twin", table):
            op.execute(statement)


def downgrade() -> None:
    for table in ("device_health", "connection_log", "connectivity"):
        op.execute(f"DROP TABLE twin.{table}")
