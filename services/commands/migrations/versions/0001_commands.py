"""commands: commands, their history, template projection, outbox

Revision ID: 0001
Revises: None
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from muster.runtime.db import tenant_policy_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "commands"

# registry_templates: a tenant reads its own templates and the system ones (tenant_id = ''); only
# platform scope (the projection consumer) writes.
_TENANT = "current_setting('muster.tenant_id', true)"
_PLATFORM = "current_setting('muster.platform', true) = 'on'"
_TEMPLATE_READ = (f"(tenant_id <> '' AND tenant_id = {_TENANT}) OR {_PLATFORM} "
                  f"OR (tenant_id = '' AND coalesce({_TENANT}, '') <> '')")
TEMPLATE_POLICIES = [
    f"ALTER TABLE {S}.registry_templates ENABLE ROW LEVEL SECURITY",
    f"ALTER TABLE {S}.registry_templates FORCE ROW LEVEL SECURITY",
    f"CREATE POLICY template_read ON {S}.registry_templates FOR SELECT USING ({_TEMPLATE_READ})",
    f"CREATE POLICY platform_write ON {S}.registry_templates FOR ALL USING ({_PLATFORM}) WITH CHECK ({_PLATFORM})",
]


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "applied_events",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
        schema=S,
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("nats_subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        schema=S,
    )
    op.create_index("outbox_unpublished", "outbox", ["seq"], unique=False, schema=S,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "commands",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), server_default="", nullable=False),
        sa.Column("request_hash", sa.Text(), server_default="", nullable=False),
        sa.Column("ttl", sa.Interval(), nullable=False),
        sa.Column("delivery_timeout", sa.Interval(), nullable=False),
        sa.Column("execution_timeout", sa.Interval(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("initial_backoff", sa.Interval(), nullable=False),
        sa.Column("backoff_multiplier", sa.Float(), nullable=False),
        sa.Column("max_backoff", sa.Interval(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _time("create_time", nullable=False),
        _time("update_time", nullable=False),
        _time("send_time"),
        _time("deliver_time"),
        _time("finish_time"),
        _time("ack_deadline"),
        _time("execution_deadline"),
        _time("retry_time"),
        _time("due_at"),
        sa.Column("due_kind", sa.Text(), nullable=True),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("history", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=S,
    )
    op.create_index("commands_by_device", "commands", ["tenant_id", "device_id", "create_time", "id"], schema=S)
    op.create_index("commands_by_tenant", "commands", ["tenant_id", "create_time", "id"], schema=S)
    op.create_index("commands_request_id", "commands", ["tenant_id", "request_id"], unique=True, schema=S,
                    postgresql_where=sa.text("request_id <> ''"))
    op.create_index("commands_due", "commands", ["due_at"], schema=S, postgresql_where=sa.text("due_at IS NOT NULL"))
    op.create_index("commands_pending_by_device", "commands", ["device_id", "create_time"], schema=S,
                    postgresql_where=sa.text("state = 1"))
    op.create_table(
        "registry_devices",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Text(), nullable=True),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        _time("update_time", nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
        schema=S,
    )
    op.create_table(
        "registry_templates",
        sa.Column("template_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("commands", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        _time("update_time", nullable=False),
        sa.PrimaryKeyConstraint("template_id"),
        schema=S,
    )
    op.create_table(
        "registry_tombstones",
        sa.Column("device_id", sa.Text(), nullable=False),
        _time("deleted_at", nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
        schema=S,
    )
    for table in ("commands", "outbox", "registry_devices"):
        for statement in tenant_policy_sql(S, table):
            op.execute(statement)
    for statement in TEMPLATE_POLICIES:
        op.execute(statement)


def downgrade() -> None:
    for table in ("registry_tombstones", "registry_templates", "registry_devices", "commands", "outbox",
                  "applied_events"):
        op.drop_table(table, schema=S)
