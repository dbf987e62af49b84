"""backfill_features through ``airflow dags test``: features of a validated partition, upserted,
materialized to the online store and validated (ranges, NaN after warm-up, PSI drift).

The features of the three weeks before are backfilled by the session fixture (the drift check's
training reference and trailing window)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import GOOD_PARTITION, DagTest

pytestmark = pytest.mark.integration


def test_backfill_features_upserts_materializes_and_validates_partition(
    dag_test: DagTest, market_data: Settings
) -> None:
    from hft.features.online import OnlineFeatures
    from hft.quality.validate import read_runs
    from hft.storage import db

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
    latest = OnlineFeatures(market_data).latest("BTCUSDT")
    assert latest is not None
    assert latest[0] == datetime(2024, 8, 9, 1, 0, tzinfo=UTC)
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
