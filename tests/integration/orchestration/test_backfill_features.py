"""backfill_features through ``airflow dags test``: features of a validated partition, upserted,
materialized to the online store and validated (ranges, NaN after warm-up, PSI drift).

The features of the three weeks before are backfilled by the session fixture (the drift check's
training reference and trailing window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import GOOD_PARTITION, DagTest

pytestmark = pytest.mark.integration


def _forget_online(settings: Settings, symbols: list[str]) -> None:
    """Drop the symbols' online rows. Feast's online store keeps each symbol's newest row and skips
    an older one, and an earlier module (the asset chain) materialized a later hour: without this,
    the partition's materialization could not be seen."""
    from feast.infra.online_stores.helpers import _redis_key

    from hft.features.online import OnlineFeatures, _entity_key

    online = OnlineFeatures(settings)
    client = online.online._get_client(online.config.online_store)
    version = online.config.entity_key_serialization_version
    for symbol in symbols:
        client.delete(_redis_key(online.config.project, _entity_key(symbol), version))
    assert all(online.latest(s) is None for s in symbols)


def test_backfill_features_upserts_materializes_and_validates_partition(
    dag_test: DagTest, market_data: Settings
) -> None:
    from hft.features.online import OnlineFeatures
    from hft.quality.validate import read_runs
    from hft.storage import db

    _forget_online(market_data, ["BTCUSDT", "ETHUSDT"])
    proc = dag_test("backfill_features", GOOD_PARTITION)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    with db.connect(market_data) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*), count(rsi_14) FROM features.bar_features WHERE interval = '15m' "
            "AND event_timestamp > %s AND event_timestamp <= %s GROUP BY symbol ORDER BY symbol",
            (datetime.fromisoformat(GOOD_PARTITION["start"]), datetime.fromisoformat(GOOD_PARTITION["end"])),
        ).fetchall()
    # four 15m bars per symbol close inside the hour, every one past the warm-up
    assert rows == [("BTCUSDT", 4, 4), ("ETHUSDT", 4, 4)]
    # the online rows were dropped before the run: what is there now, the DAG materialized. Its
    # window ends one bar after the partition (the bar closing at its end is included), so with
    # a later hour already backfilled (the asset-chain module) the newest row is that next bar.
    start, end = (datetime.fromisoformat(GOOD_PARTITION[k]) for k in ("start", "end"))
    with db.connect(market_data) as conn:
        newest = conn.execute(
            "SELECT max(event_timestamp) FROM features.bar_features WHERE symbol = 'BTCUSDT' "
            "AND interval = '15m' AND event_timestamp >= %s AND event_timestamp <= %s",
            (start, end + timedelta(minutes=15)),
        ).fetchone()
    latest = OnlineFeatures(market_data).latest("BTCUSDT")
    assert latest is not None
    assert newest is not None
    assert latest[0] == newest[0]
    assert latest[0] >= datetime(2024, 8, 9, 1, 0, tzinfo=UTC)
    assert 0 <= latest[1]["rsi_14"] <= 100
    run = read_runs(market_data, limit=1, kind="features")[0]
    assert run["success"], run["summary"]
    assert run["rows"] == 8
    assert any("PSI over" in n for n in run["notes"])
    # the week before holds the 2024-08-05 crash: volatility drifted from the reference, and the
    # drift check says so as a warning (the features themselves are correct)
    drift = next(c for c in run["checks"] if c["description"] == "PSI <= threshold")
    assert not drift["success"]
    assert drift["severity"] == "warning"
    assert "vol_64" in drift["examples"]
    assert "features" in out
    assert "passed" in out
