"""Paper trading: signals, risk limits and trading states, simulated fills, positions and PnL.

Pure logic lives in :mod:`hft.trading.strategy`, :mod:`hft.trading.fills` and
:mod:`hft.trading.pnl` (no I/O, unit-tested); :mod:`hft.trading.store` persists intents,
orders, fills, positions, cash, bot state and reports in the ``trading`` schema;
:mod:`hft.trading.scoring` is the model server's scorer (champion model + online features).
"""
