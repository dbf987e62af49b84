"""Offline features: ``features.bar_features``, one row per (symbol, interval, bar close time).

Revision ID: 0002_features
Revises: 0001_market

The table is the offline store of Feast's ``bar_features`` view (PostgreSQL source) and what
``hft features backfill`` and the feature calculator upsert into. ``event_timestamp`` is the
bar's close time: the earliest instant its features are known, so Feast's point-in-time join
never hands a training row a feature computed from a bar that closed later. The columns are
the union of the feature specs of ``hft.features.spec`` at this revision (``bar_features_v1``);
a trade-derived feature is NULL (absent) for bars without trade columns. A later spec adds
its columns in a later revision.
"""

from __future__ import annotations

from alembic import op

revision = "0002_features"
down_revision = "0001_market"
branch_labels = None
depends_on = None

FEATURE_COLUMNS = (
    "ret_1",
    "ret_2",
    "ret_4",
    "ret_8",
    "ret_16",
    "vol_16",
    "vol_64",
    "hl_range",
    "rsi_14",
    "ema_dist_12",
    "ema_dist_26",
    "sma_dist_20",
    "sma_dist_50",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pos_20",
    "bb_width_20",
    "atr_14",
    "volume_z_20",
    "hour_sin",
    "hour_cos",
    "buy_imbalance",
    "vwap_dist",
    "trade_count_z_20",
)


def upgrade() -> None:
    """Create features.bar_features."""
    cols = ",\n    ".join(f"{c} double precision" for c in FEATURE_COLUMNS)
    op.execute("CREATE SCHEMA IF NOT EXISTS features")
    op.execute(f"""
CREATE TABLE IF NOT EXISTS features.bar_features (
    symbol          text        NOT NULL,
    interval        text        NOT NULL,
    event_timestamp timestamptz NOT NULL,
    open_time       timestamptz NOT NULL,
    feature_version text        NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    {cols},
    PRIMARY KEY (symbol, interval, event_timestamp),
    CHECK (event_timestamp > open_time)
)""")
    # Feast's point-in-time join scans by time; the primary key covers per-symbol lookups
    op.execute(
        "CREATE INDEX IF NOT EXISTS bar_features_event_timestamp ON features.bar_features (event_timestamp)"
    )
    op.execute(
        "COMMENT ON TABLE features.bar_features IS 'Bar features (hft.features), one row per symbol, "
        "interval and bar close time (event_timestamp: when the features became known). Written by "
        "hft features backfill and the feature calculator; read by Feast (offline store).'"
    )
    op.execute(
        "COMMENT ON COLUMN features.bar_features.created IS 'When this row was written (Feast "
        "created_timestamp_column: the newest write wins on equal event_timestamp).'"
    )


def downgrade() -> None:
    """Drop features.bar_features."""
    op.execute("DROP TABLE IF EXISTS features.bar_features")
