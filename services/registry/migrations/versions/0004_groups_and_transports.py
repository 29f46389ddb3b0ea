"""device groups and transports

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from muster.runtime.db import tenant_policy_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("transports", postgresql.JSONB(astext_type=sa.Text()),
                                       server_default=sa.text("'[]'::jsonb"), nullable=False), schema="registry")
    op.create_table(
        "groups",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("filter", sa.Text(), server_default="", nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        schema="registry",
    )
    op.create_index("groups_by_create_time", "groups", ["tenant_id", "create_time", "id"], unique=False,
                    schema="registry")
    op.create_table(
        "group_members",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id", "group_id"], ["registry.groups.tenant_id", "registry.groups.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "group_id", "device_id"),
        schema="registry",
    )
    op.create_index("group_members_by_device", "group_members", ["tenant_id", "device_id"], unique=False,
                    schema="registry")
    op.create_table(
        "device_iccids",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("iccid", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "iccid"),
        schema="registry",
    )
    op.create_index("device_iccids_by_iccid", "device_iccids", ["iccid"], unique=False, schema="registry")
    op.create_index("device_iccids_by_device", "device_iccids", ["device_id"], unique=False, schema="registry")
    for table in ("groups", "group_members", "device_iccids"):
        for statement in tenant_policy_sql("registry", table):
            op.execute(statement)


def downgrade() -> None:
    op.drop_index("device_iccids_by_device", table_name="device_iccids", schema="registry")
    op.drop_index("device_iccids_by_iccid", table_name="device_iccids", schema="registry")
    op.drop_table("device_iccids", schema="registry")
    op.drop_index("group_members_by_device", table_name="group_members", schema="registry")
    op.drop_table("group_members", schema="registry")
    op.drop_index("groups_by_create_time", table_name="groups", schema="registry")
    op.drop_table("groups", schema="registry")
    op.drop_column("devices", "transports", schema="registry")
