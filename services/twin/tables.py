"""The twin context's tables (schema `twin`).

`twins` is also the twin's projection of the registry (one row per device, with its tenant: the
connectivity and health slices use it for device -> tenant); `registry_tombstones` keeps deleted
devices dead against late events.
"""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, MetaData, PrimaryKeyConstraint, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from muster.runtime.outbox import OutboxTables

metadata = MetaData(schema="twin")
infrastructure = OutboxTables("twin", metadata)

TENANT_OWNED = ("twins", "desired_revisions", "outbox")


def _document(name: str) -> Column[object]:
    return Column(name, JSONB, nullable=False, server_default=text("'{}'::jsonb"))


twins = Table(
    "twins", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    _document("desired"),
    Column("desired_version", BigInteger, nullable=False, server_default=text("0")),
    _document("desired_meta"),  # JSON Pointer -> {"t": time, "s": revision, "d": deleted}
    _document("reported"),
    Column("reported_version", BigInteger, nullable=False, server_default=text("0")),
    _document("reported_meta"),  # JSON Pointer -> {"t": time, "s": stream sequence, "d": deleted}
    _document("rejections"),  # JSON Pointer -> {"code", "message", "version", "seq"}
    Column("in_sync", Boolean, nullable=False, server_default=text("true")),
    # The desired version last sent to the device on twin/desired: below desired_version means a
    # push is pending (the pusher's sweep finds it even if the process died right after the commit).
    Column("pushed_version", BigInteger, nullable=False, server_default=text("0")),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Index("twins_push_pending", "device_id", postgresql_where=text("desired_version > pushed_version")),
)

desired_revisions = Table(
    "desired_revisions", metadata,
    Column("device_id", Text, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("patch", JSONB, nullable=False),
    Column("desired", JSONB, nullable=False),
    Column("actor", Text, nullable=False),
    Column("rollback_of", BigInteger),
    Column("create_time", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("device_id", "revision", name="desired_revisions_pkey"),
)

registry_tombstones = Table(
    "registry_tombstones", metadata,
    Column("device_id", Text, primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),  # event time of the DeviceDeleted
)

# The connectivity and health slice's tables live on the same metadata (so the drift check sees them).
from services.twin import connectivity_tables as _connectivity_tables  # noqa: E402,F401
