"""The registry schema as SQLAlchemy Core tables: used by the repository and by Alembic autogenerate."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from muster.runtime.outbox import OutboxTables

SCHEMA = "registry"
metadata = MetaData(schema=SCHEMA)
infrastructure = OutboxTables(SCHEMA, metadata)

TENANT_OWNED = ("tenants", "sites", "devices", "outbox", "templates", "sensors", "modules")
"""Tables with row-level security on tenant_id (tenants: a tenant sees its own row; templates: every
tenant also reads the system templates, tenant_id = '', which only platform scope may write)."""

tenants = Table(
    "tenants", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
)

sites = Table(
    "sites", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("address", Text, nullable=False, server_default=""),
    Column("time_zone", Text, nullable=False, server_default="UTC"),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("altitude", Float),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"]),
    Index("sites_by_create_time", "tenant_id", "create_time", "id"),
)

devices = Table(
    "devices", metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("site_id", Text),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("serial", Text, nullable=False, server_default=""),
    Column("notes", Text, nullable=False, server_default=""),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("altitude", Float),
    Column("state", SmallInteger, nullable=False),
    Column("template_id", Text),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"]),
    ForeignKeyConstraint(["tenant_id", "site_id"], ["registry.sites.tenant_id", "registry.sites.id"]),
    ForeignKeyConstraint(["template_id"], ["registry.templates.id"], name="devices_template_id_fkey"),
    UniqueConstraint("tenant_id", "id", name="devices_tenant_id_id_key"),
    Index("devices_serial_per_tenant", "tenant_id", "serial", unique=True,
          postgresql_where=text("serial <> ''")),
    Index("devices_by_create_time", "tenant_id", "create_time", "id"),
    Index("devices_by_site", "tenant_id", "site_id"),
    Index("devices_labels", "labels", postgresql_using="gin"),
    Index("devices_by_template", "template_id"),
)

templates = Table(
    "templates", metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),  # '' for system templates
    Column("display_name", Text, nullable=False),
    Column("slug", Text, nullable=False, server_default=""),
    Column("category", Text, nullable=False, server_default=""),
    Column("manufacturer", Text, nullable=False, server_default=""),
    Column("model", Text, nullable=False, server_default=""),
    Column("metrics", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("commands", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("slots", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Index("templates_by_create_time", "tenant_id", "create_time", "id"),
)

sensors = Table(
    "sensors", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("type", SmallInteger, nullable=False),
    Column("unit", Text, nullable=False, server_default=""),
    Column("label", Text, nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("last_value", JSONB),
    Column("last_seen", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("device_id", "key"),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
)

modules = Table(
    "modules", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("slot", Text, nullable=False),
    Column("template_id", Text, nullable=False),
    Column("serial", Text, nullable=False, server_default=""),
    Column("label", Text, nullable=False, server_default=""),
    Column("metric_key_map", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("device_id", "id"),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
    ForeignKeyConstraint(["template_id"], ["registry.templates.id"], name="modules_template_id_fkey"),
    Index("modules_by_template", "template_id"),
)
