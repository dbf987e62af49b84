"""The live record of every model the API scores closed bars with: champion and challenger.

Revision ID: 0004_shadow
Revises: 0003_trading

One row per bar, model version and role, written by the API's predict-ahead when it scores a
closed bar (``hft.trading.shadow``). ``close`` is the bar's close as the calculator announced it,
so the outcome of a bar is the next bar's row: no other table is needed to judge a prediction.
The primary key makes the record idempotent: a bar scored again (a restart, another worker)
writes nothing new.
"""

from __future__ import annotations

from alembic import op

revision = "0004_shadow"
down_revision = "0003_trading"
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE IF NOT EXISTS trading.shadow_predictions (
    symbol          text NOT NULL,
    interval        text NOT NULL,
    open_time       timestamptz NOT NULL,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('champion', 'challenger')),
    prob_up         double precision NOT NULL,
    close           double precision NOT NULL,
    feature_time    timestamptz NOT NULL,
    scored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, open_time, model_name, model_version)
);
CREATE INDEX IF NOT EXISTS shadow_version ON trading.shadow_predictions (model_name, model_version, open_time);
"""

_DOWN = "DROP TABLE IF EXISTS trading.shadow_predictions;"


def upgrade() -> None:
    """Create the live record."""
    op.execute(_UP)


def downgrade() -> None:
    """Drop it."""
    op.execute(_DOWN)
