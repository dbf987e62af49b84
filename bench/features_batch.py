"""The batch features are the stream's state folded (issue 22): is that fast enough for a backfill?

``compute_features`` folds :class:`hft.features.FeatureState` bar by bar (no vectorised twin). This
times it over the real 1m klines (BTCUSDT and ETHUSDT 2025-05-20..08-18, 130,707 bars each) for
every OHLCV spec and extrapolates to a backfill of 3 years of 1m bars per symbol (1,577,880 bars).
The bar: a couple of minutes per symbol. Needs no stack; load average recorded beside the figures
(the machine is shared).

``python -m bench --name features_batch`` (also renders the README table) or
``python -m bench.features_batch`` (only the JSON).
"""

from __future__ import annotations

import os
import time
from typing import Any

from hft.config import Settings

KLINES_1M = {
    "BTCUSDT": "klines_1m/BTCUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
    "ETHUSDT": "klines_1m/ETHUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
}
BARS_3Y_1M = 3 * 365 * 1440 + 1440  # 1,577,880: three years of 1m bars, one leap day


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold every OHLCV spec over the real 1m bars of both symbols; extrapolate to 3 years."""
    from hft.features import compute_features
    from hft.features.spec import SPECS
    from hft.market.ohlcv import read_ohlcv_csv

    specs = [s for s in SPECS.values() if not s.uses_trades]
    bars = {sym: read_ohlcv_csv(settings.data_dir / rel) for sym, rel in KLINES_1M.items()}
    if quick:
        bars = {sym: b.iloc[:30_000] for sym, b in bars.items()}
    compute_features(next(iter(bars.values())).iloc[:3000], specs[0])  # imports, caches
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for spec in specs:
        rates = []
        for b in bars.values():
            a = time.perf_counter()
            compute_features(b, spec)
            rates.append(len(b) / (time.perf_counter() - a))
        rate = min(rates)  # the slower symbol
        key = spec.version
        results[f"fold_1m_bars_per_s[{key}]"] = rate
        results[f"backfill_3y_1m_seconds_per_symbol[{key}]"] = BARS_3Y_1M / rate
    return (
        {
            "files": list(KLINES_1M.values()),
            "bars_per_symbol": {sym: len(b) for sym, b in bars.items()},
            "specs": [s.version for s in specs],
            "n_features": {s.version: s.n_features for s in specs},
            "extrapolated_to_bars": BARS_3Y_1M,
            "load_average_1m": [load_before, os.getloadavg()[0]],
        },
        results,
    )


if __name__ == "__main__":
    from bench.common import write_result
    from hft.config import get_settings

    params, res = run(get_settings(), quick=False)
    print(write_result("features_batch", params, res))
    for k, v in res.items():
        print(f"{k}: {v:,.1f}")
