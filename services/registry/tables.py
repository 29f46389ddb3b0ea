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

TENANT_OWNED = ("tenants", "sites", "devices", "outbox", "templates", "sensors", "modules",
                "provisioning_tokens", "device_secrets", "device_registrations",
                "groups", "group_members", "device_iccids")
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
    Column("transports", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
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

# --- provisioning and device credentials (0003) ----------------------------------------------------
# Site and template are checked when a token is created and again when a device registers, not by
# foreign keys: deleting a site or template must not fail on (or silently cascade into) tokens.

provisioning_tokens = Table(
    "provisioning_tokens", metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("site_id", Text),
    Column("template_id", Text),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("max_uses", Integer, nullable=False),
    Column("use_count", Integer, nullable=False, server_default=text("0")),
    Column("claim_existing", Boolean, nullable=False, server_default=text("false")),
    Column("expire_time", DateTime(timezone=True), nullable=False),
    Column("revoke_time", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"], ondelete="CASCADE"),
    UniqueConstraint("secret_hash", name="provisioning_tokens_secret_hash_key"),
    Index("provisioning_tokens_by_create_time", "tenant_id", "create_time", "id"),
)

device_secrets = Table(
    "device_secrets", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("expire_time", DateTime(timezone=True)),  # NULL: valid until the next rotation
    PrimaryKeyConstraint("device_id", "id"),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
)

device_registrations = Table(
    "device_registrations", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("token_id", Text, nullable=False),
    Column("serial", Text, nullable=False),
    Column("hardware", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("claimed", Boolean, nullable=False),
    Column("register_time", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
)

# --- groups and device transports (0004) -------------------------------------------------------
# Memberships reference the group and the device within one tenant (composite keys), so a row can
# never join a device of one tenant to a group of another, and deleting either drops it.

groups = Table(
    "groups", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("type", SmallInteger, nullable=False),
    Column("filter", Text, nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["registry.tenants.tenant_id"], ondelete="CASCADE"),
    Index("groups_by_create_time", "tenant_id", "create_time", "id"),
)

group_members = Table(
    "group_members", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("group_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "group_id", "device_id"),
    ForeignKeyConstraint(["tenant_id", "group_id"], ["registry.groups.tenant_id", "registry.groups.id"],
                         ondelete="CASCADE"),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
    Index("group_members_by_device", "tenant_id", "device_id"),
)

# The SIMs of devices' cellular transports (devices.transports is the source of truth; the device
# repository rewrites a device's rows with it), so a device can be found by its ICCID.
device_iccids = Table(
    "device_iccids", metadata,
    Column("tenant_id", Text, nullable=False),
    Column("iccid", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "iccid"),
    ForeignKeyConstraint(["tenant_id", "device_id"], ["registry.devices.tenant_id", "registry.devices.id"],
                         ondelete="CASCADE"),
    Index("device_iccids_by_iccid", "iccid"),
    Index("device_iccids_by_device", "device_id"),
)
