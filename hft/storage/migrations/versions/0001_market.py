"""Market store: schemas market/features/trading, market.ticks and market.bars.

With TimescaleDB available (packaged and preloaded) the extension is created and both tables
become hypertables (compression on ticks only where the license allows it). On plain
PostgreSQL market.ticks is range-partitioned by month on trade time (partitions created on
demand by ``market.ensure_tick_partition``) with BRIN indexes on time.

Revision ID: 0001_market
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001_market"
down_revision = None
branch_labels = None
depends_on = None

TICKS_COLUMNS = """
    symbol          text             NOT NULL,
    trade_id        bigint           NOT NULL,
    price           double precision NOT NULL,
    quantity        double precision NOT NULL,
    buyer_is_maker  boolean          NOT NULL,
    trade_time      timestamptz      NOT NULL,
    event_time      timestamptz      NOT NULL,
    receive_time_ns bigint           NOT NULL,
    source          text             NOT NULL,
    venue           text             NOT NULL,
    ingest_time     timestamptz      NOT NULL DEFAULT now(),
    -- (symbol, trade_id) identifies a trade; trade_time is immutable per trade id, so adding
    -- it (the partitioning column must be in every unique key) keeps the key unique per trade.
    PRIMARY KEY (symbol, trade_id, trade_time)
"""

BARS_COLUMNS = """
    symbol       text             NOT NULL,
    interval     text             NOT NULL,
    open_time    timestamptz      NOT NULL,
    close_time   timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    trade_count  bigint,
    buy_volume   double precision,
    quote_volume double precision,
    vwap         double precision,
    source       text             NOT NULL CHECK (source IN ('kline', 'ticks')),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, open_time),
    CHECK (close_time > open_time)
"""

COMMENTS = [
    "COMMENT ON TABLE market.ticks IS 'Exchange trades, one row per (symbol, trade_id), written idempotently "
    "by the tick ingestor. Three clocks kept apart: trade_time (matching engine), event_time (exchange event), "
    "receive_time_ns (this system).'",
    "COMMENT ON COLUMN market.ticks.trade_time IS 'Trade time at the matching engine (Binance T); immutable per "
    "trade id, which is why it may sit in the primary key beside (symbol, trade_id).'",
    "COMMENT ON COLUMN market.ticks.receive_time_ns IS 'Local receive time, ns since the epoch; never used as "
    "trade time.'",
    "COMMENT ON COLUMN market.ticks.buyer_is_maker IS 'true: the aggressor sold (Binance m).'",
    "COMMENT ON TABLE market.bars IS 'OHLCV bars from exchange klines (source=kline) and from market.ticks "
    "(source=ticks), one definition: a bar is stamped with its open time but known only at its close "
    "(close_time); never use it before close_time. A ticks bar never overwrites a kline bar.'",
    "COMMENT ON COLUMN market.bars.open_time IS 'Start of the bar interval (inclusive). The bar is known only "
    "at close_time.'",
    "COMMENT ON COLUMN market.bars.close_time IS 'End of the bar interval (exclusive) = open_time + interval: "
    "the earliest instant the bar is known.'",
    "COMMENT ON COLUMN market.bars.buy_volume IS 'Taker buy base volume: trades with buyer_is_maker = false.'",
    "COMMENT ON COLUMN market.bars.quote_volume IS 'Sum of price * quantity (quote asset).'",
    "COMMENT ON COLUMN market.bars.vwap IS 'quote_volume / volume; NULL when the source has no quote volume.'",
]

ENSURE_PARTITION = """
CREATE OR REPLACE FUNCTION market.ensure_tick_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    part text := 'ticks_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass('market.' || part) IS NULL THEN
        -- several ingestors may meet a new month at once: one creates, the others wait and see it
        PERFORM pg_advisory_xact_lock(hashtext('market.ticks partitions'));
        IF to_regclass('market.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE market.%I PARTITION OF market.ticks FOR VALUES FROM (%L) TO (%L)',
                           part, month_start, month_start + interval '1 month');
        END IF;
    END IF;
    RETURN part;
END $$;
"""


def _timescale_available() -> bool:
    bind = op.get_bind()
    packaged = bind.exec_driver_sql(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).scalar()
    preload = str(bind.exec_driver_sql("SHOW shared_preload_libraries").scalar() or "")
    return bool(packaged) and "timescaledb" in preload


def upgrade() -> None:
    """Create the schemas and the market tables for the backend found."""
    for schema in ("market", "features", "trading"):
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    timescale = _timescale_available()
    if timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        op.execute(f"CREATE TABLE market.ticks ({TICKS_COLUMNS})")
        op.execute("SELECT create_hypertable('market.ticks', by_range('trade_time', INTERVAL '1 day'))")
        op.execute(f"CREATE TABLE market.bars ({BARS_COLUMNS})")
        op.execute("SELECT create_hypertable('market.bars', by_range('open_time', INTERVAL '90 days'))")
        license_ = str(op.get_bind().exec_driver_sql("SHOW timescaledb.license").scalar())
        if license_ == "timescale":
            # the Apache edition answers "not supported under the current apache license"
            op.execute(
                "ALTER TABLE market.ticks SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'trade_id')"
            )
            op.execute("SELECT add_compression_policy('market.ticks', INTERVAL '7 days')")
    else:
        op.execute(f"CREATE TABLE market.ticks ({TICKS_COLUMNS}) PARTITION BY RANGE (trade_time)")
        op.execute(ENSURE_PARTITION)
        # BRIN: ticks arrive in time order, so block ranges stay tight and the index tiny
        op.execute("CREATE INDEX ticks_trade_time_brin ON market.ticks USING brin (trade_time)")
        # bars are small (35k rows per symbol-year at 15m): one table, BRIN for time scans
        op.execute(f"CREATE TABLE market.bars ({BARS_COLUMNS})")
        op.execute("CREATE INDEX bars_open_time_brin ON market.bars USING brin (open_time)")
    for sql in COMMENTS:
        op.execute(sql)


def downgrade() -> None:
    """Drop the market tables (the schemas stay: later revisions own their tables)."""
    op.execute("DROP TABLE IF EXISTS market.bars")
    op.execute("DROP TABLE IF EXISTS market.ticks CASCADE")
    op.execute("DROP FUNCTION IF EXISTS market.ensure_tick_partition(timestamptz)")
