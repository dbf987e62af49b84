"""Read-only views for the dashboard: queries and the numbers it shows.

Each module answers one page: :mod:`~hft.reporting.trading` (PnL, equity, orders, fills, the
kill switch through the API), :mod:`~hft.reporting.market` (prices, signals, latest
features), :mod:`~hft.reporting.models` (MLflow champion and challenger),
:mod:`~hft.reporting.quality` (Great Expectations results) and
:mod:`~hft.reporting.prometheus` (latency, throughput, lag, health). Nothing here writes to
a database; the Dash wiring lives in ``dashboard/``.
"""
