"""validate_market_data through ``airflow dags test`` on real shared data in the test stack."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import BAD_PARTITION, GOOD_PARTITION, DagTest, load_klines

pytestmark = pytest.mark.integration


def _runs(settings: Settings) -> list[dict[str, object]]:
    from hft.quality.validate import read_runs

    return read_runs(settings, limit=20)


def test_validate_market_data_passes_on_real_partition_and_emits_asset(
    dag_test: DagTest, market_data: Settings
) -> None:
    proc = dag_test("validate_market_data", GOOD_PARTITION)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    latest = {r["kind"]: r for r in reversed(_runs(market_data))}
    assert latest["ticks"]["success"], latest
    assert latest["bars"]["success"], latest
    # every captured spot trade of both symbols with trade time from 00:00:00 on
    assert latest["ticks"]["rows"] == 18_583
    assert latest["ticks"]["start"] == datetime.fromisoformat(GOOD_PARTITION["start"]).isoformat()
    assert (market_data.home_dir / "data_docs" / "index.html").exists()
    # publish emitted the asset event that schedules backfill_features, carrying the partition
    import psycopg

    with psycopg.connect(market_data.database_url("airflow", driver="postgresql")) as conn:
        extra = conn.execute(
            "SELECT ae.extra FROM asset_event ae JOIN asset a ON a.id = ae.asset_id "
            "WHERE a.name = 'market_data_validated' ORDER BY ae.id DESC LIMIT 1"
        ).fetchone()[0]
    assert extra == GOOD_PARTITION


def test_validate_market_data_fails_on_bad_partition_naming_each_fault(
    dag_test: DagTest, market_data: Settings, data_dir: Path
) -> None:
    """Inject a duplicated trade id, a negative price and a missing bar; all three are named."""
    from hft.storage import db

    with db.connect(market_data) as conn:
        dup = conn.execute(
            "SELECT trade_id FROM market.ticks WHERE symbol = 'BTCUSDT' AND trade_time < %s "
            "ORDER BY trade_id LIMIT 1 OFFSET 100",
            (datetime.fromisoformat(BAD_PARTITION["end"]),),
        ).fetchone()[0]
        neg = dup + 50
        conn.execute(
            "INSERT INTO market.ticks (symbol, trade_id, price, quantity, buyer_is_maker, trade_time, event_time, "
            "receive_time_ns, source, venue) SELECT symbol, trade_id, price, quantity, buyer_is_maker, "
            "trade_time + interval '1 millisecond', event_time, receive_time_ns, source, venue "
            "FROM market.ticks WHERE symbol = 'BTCUSDT' AND trade_id = %s",
            (dup,),
        )
        conn.execute(
            "UPDATE market.ticks SET price = -price WHERE symbol = 'BTCUSDT' AND trade_id = %s", (neg,)
        )
        conn.execute(
            "DELETE FROM market.bars WHERE symbol = 'ETHUSDT' AND interval = '15m' "
            "AND open_time = '2024-08-08T23:15:00+00:00'"
        )
        conn.commit()
    try:
        proc = dag_test("validate_market_data", BAD_PARTITION)
    finally:
        with db.connect(market_data) as conn:
            conn.execute(
                "DELETE FROM market.ticks WHERE symbol = 'BTCUSDT' AND trade_id = %s AND trade_time = "
                "(SELECT max(trade_time) FROM market.ticks WHERE symbol = 'BTCUSDT' AND trade_id = %s)",
                (dup, dup),
            )
            conn.execute(
                "UPDATE market.ticks SET price = -price WHERE symbol = 'BTCUSDT' AND trade_id = %s", (neg,)
            )
            conn.commit()
        load_klines(market_data, data_dir, "2024-08-08 23:15", "2024-08-08 23:15")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    # the task log carries the readable summary naming each fault
    assert f"BTCUSDT#{dup}" in out, out[-6000:]
    assert f"BTCUSDT#{neg}" in out, out[-6000:]
    assert "ETHUSDT 15m 2024-08-08T23:15Z" in out, out[-6000:]
    assert "trade ids unique per symbol" in out
    assert "price > 0" in out
    assert "no missing bars" in out
    latest = {r["kind"]: r for r in reversed(_runs(market_data))}
    assert not latest["ticks"]["success"]
    assert not latest["bars"]["success"]
    # the data docs pages of these runs show the failing rows
    for kind, key in (("ticks", f"BTCUSDT#{neg}"), ("bars", "ETHUSDT 15m 2024-08-08T23:15Z")):
        page = latest[kind]["pages"][0]
        html = Path(page.removeprefix("file://")).read_text()
        assert key in html, (kind, page)
    assert json.loads(json.dumps(latest["ticks"]))["failed"]
