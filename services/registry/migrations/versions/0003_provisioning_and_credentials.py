"""provisioning tokens and device credentials

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from muster.runtime.db import tenant_policy_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("provisioning_tokens", "device_secrets", "device_registrations")


def upgrade() -> None:
    op.create_table(
        "provisioning_tokens",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column("site_id", sa.Text(), nullable=True),
        sa.Column("template_id", sa.Text(), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("use_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("claim_existing", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoke_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash", name="provisioning_tokens_secret_hash_key"),
        schema="registry",
    )
    op.create_index("provisioning_tokens_by_create_time", "provisioning_tokens", ["tenant_id", "create_time", "id"],
                    unique=False, schema="registry")
    op.create_table(
        "device_secrets",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "id"),
        schema="registry",
    )
    op.create_table(
        "device_registrations",
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("token_id", sa.Text(), nullable=False),
        sa.Column("serial", sa.Text(), nullable=False),
        sa.Column("hardware", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("claimed", sa.Boolean(), nullable=False),
        sa.Column("register_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
        schema="registry",
    )
    for table in _TABLES:
        for statement in tenant_policy_sql("registry", table):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("device_registrations", schema="registry")
    op.drop_table("device_secrets", schema="registry")
    op.drop_index("provisioning_tokens_by_create_time", table_name="provisioning_tokens", schema="registry")
    op.drop_table("provisioning_tokens", schema="registry")
