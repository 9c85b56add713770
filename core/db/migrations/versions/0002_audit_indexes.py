"""Indexes for the audit statistics queries (one (column, ts) index per GROUP BY).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_NEW = (
    ("ix_audit_events_action_ts_latency_ms", ["action", "ts", "latency_ms"]),
    ("ix_audit_events_action_latency_ms_ts", ["action", "latency_ms", "ts"]),
    ("ix_audit_events_outcome_ts", ["outcome", "ts"]),
    ("ix_audit_events_provider_ts", ["provider", "ts"]),
    ("ix_audit_events_cache_layer_ts", ["cache_layer", "ts"]),
    ("ix_audit_events_day_ts", ["day", "ts"]),
)


def upgrade() -> None:
    # (action, ts, latency_ms) covers everything (action, ts) served.
    op.drop_index("ix_audit_events_action_ts", table_name="audit_events")
    for name, columns in _NEW:
        op.create_index(name, "audit_events", columns)


def downgrade() -> None:
    for name, _ in reversed(_NEW):
        op.drop_index(name, table_name="audit_events")
    op.create_index("ix_audit_events_action_ts", "audit_events", ["action", "ts"])
