"""telemetry, device logs and the registry projection ingest needs

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Placeholder: filled in by the slice that owns this revision."""


def downgrade() -> None:
    """Placeholder: filled in by the slice that owns this revision."""
