"""Paper trading tables: intents, orders, fills, positions, account (cash), reports, bot state.

Revision ID: 0003_trading
Revises: 0002_features

Prices and amounts are double precision: this is a paper book measured in quote currency,
and the simulation's own arithmetic is float. ``orders.intent_id`` and ``fills.intent_id``
are unique, so a redelivered intent can never fill twice.
"""

from __future__ import annotations

from alembic import op

revision = "0003_trading"
down_revision = "0002_features"
branch_labels = None
depends_on = None

_UP = """
CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE IF NOT EXISTS trading.bot_state (
    id          text PRIMARY KEY DEFAULT 'bot',
    state       text NOT NULL CHECK (state IN ('active', 'reducing', 'halted')),
    reason      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT ''
);
INSERT INTO trading.bot_state (id, state, reason, updated_by) VALUES ('bot', 'active', 'initial', 'migration')
    ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS trading.intents (
    id              uuid PRIMARY KEY,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        double precision NOT NULL CHECK (quantity > 0),
    ref_price       double precision NOT NULL,
    prob_up         double precision NOT NULL,
    model_name      text NOT NULL DEFAULT '',
    model_version   text NOT NULL DEFAULT '',
    feature_time    timestamptz,
    decided_at      timestamptz NOT NULL,
    tick_receive_ns bigint,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'filled', 'rejected')),
    status_reason   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS intents_symbol_decided ON trading.intents (symbol, decided_at DESC);
CREATE INDEX IF NOT EXISTS intents_pending ON trading.intents (status) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS trading.orders (
    id           bigserial PRIMARY KEY,
    intent_id    uuid NOT NULL UNIQUE REFERENCES trading.intents (id),
    symbol       text NOT NULL,
    side         text NOT NULL,
    order_type   text NOT NULL DEFAULT 'market',
    quantity     double precision NOT NULL,
    status       text NOT NULL,
    submitted_at timestamptz NOT NULL,
    filled_at    timestamptz
);

CREATE TABLE IF NOT EXISTS trading.fills (
    id            bigserial PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES trading.orders (id),
    intent_id     uuid NOT NULL UNIQUE REFERENCES trading.intents (id),
    symbol        text NOT NULL,
    side          text NOT NULL,
    quantity      double precision NOT NULL,
    price         double precision NOT NULL,
    market_price  double precision NOT NULL,
    slippage_bps  double precision NOT NULL,
    fee           double precision NOT NULL,
    fee_bps       double precision NOT NULL,
    liquidity     text NOT NULL,
    fill_time     timestamptz NOT NULL,
    price_source  text NOT NULL,
    trade_id      bigint,
    realized_pnl  double precision NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fills_time ON trading.fills (fill_time);

CREATE TABLE IF NOT EXISTS trading.positions (
    symbol        text PRIMARY KEY,
    quantity      double precision NOT NULL DEFAULT 0,
    avg_price     double precision NOT NULL DEFAULT 0,
    realized_pnl  double precision NOT NULL DEFAULT 0,
    fees          double precision NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS trading.account (
    id            text PRIMARY KEY DEFAULT 'paper',
    cash          double precision NOT NULL,
    starting_cash double precision NOT NULL,
    fees_paid     double precision NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS trading.reports (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('pnl', 'daily')),
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    metrics       jsonb NOT NULL,
    html_path     text
);
CREATE INDEX IF NOT EXISTS reports_kind_created ON trading.reports (kind, created_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS reports_daily_once ON trading.reports (period_start) WHERE kind = 'daily';
"""

_DOWN = """
DROP TABLE IF EXISTS trading.reports, trading.account, trading.positions, trading.fills,
    trading.orders, trading.intents, trading.bot_state;
"""


def upgrade() -> None:
    """Create the trading tables."""
    op.execute(_UP)


def downgrade() -> None:
    """Drop the trading tables (the schema belongs to 0001_market)."""
    op.execute(_DOWN)
