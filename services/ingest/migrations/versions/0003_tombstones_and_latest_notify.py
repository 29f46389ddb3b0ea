"""registry-projection tombstones for deleted devices; latest values marked once notified

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATEMENTS = (
    """CREATE TABLE ingest.registry_tombstones (
    device_id text PRIMARY KEY,
    deleted_at timestamptz NOT NULL
)""",
    # A constant default: no table rewrite. Existing rows count as not yet notified (sent once).
    "ALTER TABLE ingest.latest_telemetry ADD COLUMN notified boolean NOT NULL DEFAULT false",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE ingest.latest_telemetry DROP COLUMN notified")
    op.execute("DROP TABLE ingest.registry_tombstones")
