"""device templates, sensors and modules

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from muster.runtime.db import tenant_policy_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Row-level security of registry.templates. System templates have tenant_id = ''.
#   read:  the tenant's own rows; system rows for any transaction that has a tenant (a connection
#          with no scope at all still sees nothing); everything under platform scope.
#   write: (INSERT/UPDATE/DELETE, USING and WITH CHECK) the tenant's own non-system rows, or
#          anything under platform scope. A tenant's UPDATE/DELETE of a system row matches no row;
#          its INSERT of a system row fails the WITH CHECK.
_TENANT = "current_setting('muster.tenant_id', true)"
_PLATFORM = "current_setting('muster.platform', true) = 'on'"
_TEMPLATE_READ = (f"(tenant_id <> '' AND tenant_id = {_TENANT}) OR {_PLATFORM} "
                  f"OR (tenant_id = '' AND coalesce({_TENANT}, '') <> '')")
_TEMPLATE_WRITE = f"(tenant_id <> '' AND tenant_id = {_TENANT}) OR {_PLATFORM}"
TEMPLATE_POLICIES = [
    "ALTER TABLE registry.templates ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE registry.templates FORCE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS template_read ON registry.templates",
    "DROP POLICY IF EXISTS tenant_isolation ON registry.templates",
    f"CREATE POLICY template_read ON registry.templates FOR SELECT USING ({_TEMPLATE_READ})",
    f"CREATE POLICY tenant_isolation ON registry.templates FOR ALL USING ({_TEMPLATE_WRITE}) "
    f"WITH CHECK ({_TEMPLATE_WRITE})",
]


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), server_default="", nullable=False),
        sa.Column("category", sa.Text(), server_default="", nullable=False),
        sa.Column("manufacturer", sa.Text(), server_default="", nullable=False),
        sa.Column("model", sa.Text(), server_default="", nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("commands", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("slots", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="registry",
    )
    op.create_index("templates_by_create_time", "templates", ["tenant_id", "create_time", "id"], unique=False,
                    schema="registry")
    op.add_column("devices", sa.Column("template_id", sa.Text(), nullable=True), schema="registry")
    op.create_foreign_key("devices_template_id_fkey", "devices", "templates", ["template_id"], ["id"],
                          source_schema="registry", referent_schema="registry")
    op.create_index("devices_by_template", "devices", ["template_id"], unique=False, schema="registry")
    op.create_table(
        "sensors",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("unit", sa.Text(), server_default="", nullable=False),
        sa.Column("label", sa.Text(), server_default="", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "key"),
        schema="registry",
    )
    op.create_table(
        "modules",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("slot", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Text(), nullable=False),
        sa.Column("serial", sa.Text(), server_default="", nullable=False),
        sa.Column("label", sa.Text(), server_default="", nullable=False),
        sa.Column("metric_key_map", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["template_id"], ["registry.templates.id"], name="modules_template_id_fkey"),
        sa.PrimaryKeyConstraint("device_id", "id"),
        schema="registry",
    )
    op.create_index("modules_by_template", "modules", ["template_id"], unique=False, schema="registry")
    for statement in TEMPLATE_POLICIES:
        op.execute(statement)
    # sensors, and the 0001 tables again: tenant_policy_sql now hides tenant_id = '' rows (platform
    # events about system templates land in the outbox with no tenant) from every non-platform scope.
    for table in ("tenants", "sites", "devices", "outbox", "sensors", "modules"):
        for statement in tenant_policy_sql("registry", table):
            op.execute(statement)


def downgrade() -> None:
    # The 0001 tables keep the stricter policy (it hides only rows 0001 never wrote).
    op.drop_index("modules_by_template", table_name="modules", schema="registry")
    op.drop_table("modules", schema="registry")
    op.drop_table("sensors", schema="registry")
    op.drop_index("devices_by_template", table_name="devices", schema="registry")
    op.drop_constraint("devices_template_id_fkey", "devices", schema="registry", type_="foreignkey")
    op.drop_column("devices", "template_id", schema="registry")
    op.drop_index("templates_by_create_time", table_name="templates", schema="registry")
    op.drop_table("templates", schema="registry")
