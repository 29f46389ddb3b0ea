"""Tables of command delivery (migration 0002), on the commands context's metadata: the projection of
device presence (fed by twin's `DevicePresenceChanged` events) and the device replies already applied
(their capture-stream sequence, so a reply JetStream delivers again is not applied twice)."""

from sqlalchemy import BigInteger, Column, DateTime, Index, SmallInteger, Table, Text, func

from services.commands.tables import metadata

device_presence = Table(
    "device_presence", metadata,
    Column("device_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("presence", SmallInteger, nullable=False),  # muster.twin.v1.Presence
    Column("since", DateTime(timezone=True), nullable=False),  # only ever moves forward
    Column("session_id", Text, nullable=False, server_default=""),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

applied_replies = Table(
    "applied_replies", metadata,
    Column("stream_seq", BigInteger, primary_key=True),  # in MUSTER_COMMAND_REPLIES
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("applied_replies_applied_at", "applied_at"),
)
