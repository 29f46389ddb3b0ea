"""twin: desired and reported documents, revisions, registry projection, outbox

Revision ID: 0001
Revises: None
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from muster.runtime.db import tenant_policy_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    """CREATE TABLE twin.applied_events (
    consumer varchar(100) NOT NULL,
    event_id uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
)""",
    """CREATE TABLE twin.outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    type text NOT NULL,
    subject text NOT NULL,
    nats_subject text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
)""",
    "CREATE INDEX outbox_unpublished ON twin.outbox (seq) WHERE published_at IS NULL",
    """CREATE TABLE twin.twins (
    device_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    desired jsonb NOT NULL DEFAULT '{}'::jsonb,
    desired_version bigint NOT NULL DEFAULT 0,
    desired_meta jsonb NOT NULL DEFAULT '{}'::jsonb,
    reported jsonb NOT NULL DEFAULT '{}'::jsonb,
    reported_version bigint NOT NULL DEFAULT 0,
    reported_meta jsonb NOT NULL DEFAULT '{}'::jsonb,
    rejections jsonb NOT NULL DEFAULT '{}'::jsonb,
    in_sync boolean NOT NULL DEFAULT true,
    pushed_version bigint NOT NULL DEFAULT 0,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL
)""",
    "CREATE INDEX twins_push_pending ON twin.twins (device_id) WHERE desired_version > pushed_version",
    """CREATE TABLE twin.desired_revisions (
    device_id text NOT NULL,
    revision bigint NOT NULL,
    tenant_id text NOT NULL,
    patch jsonb NOT NULL,
    desired jsonb NOT NULL,
    actor text NOT NULL,
    rollback_of bigint,
    create_time timestamptz NOT NULL,
    CONSTRAINT desired_revisions_pkey PRIMARY KEY (device_id, revision)
)""",
    """CREATE TABLE twin.registry_tombstones (
    device_id text PRIMARY KEY,
    deleted_at timestamptz NOT NULL
)""",
)

_TENANT_OWNED = ("twins", "desired_revisions", "outbox")


def upgrade() -> None:
    for statement in _TABLES:
        op.execute(statement)
    for table in _TENANT_OWNED:
        for statement in tenant_policy_sql("twin", table):
            op.execute(statement)


def downgrade() -> None:
    for table in ("registry_tombstones", "desired_revisions", "twins", "outbox", "applied_events"):
        op.execute(f"DROP TABLE twin.{table}")
