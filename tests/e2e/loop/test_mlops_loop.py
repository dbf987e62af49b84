"""The MLOps loop end to end (issue 22 item 5), on the replay exchange, with Airflow running the DAGs.

1. History for warm-up: 1,500 real 1m klines of BTCUSDT and ETHUSDT (re-timed, renamed to
   symbols no other test uses) in ``market.bars`` with their feature rows; a first model
   trained on that history alone is the ``champion`` the API serves.
2. Trades flow in: the replay exchange serves recorded trades, each symbol's evenly spaced
   (50 a second in all, the market clock 60x faster: a 1m bar every second) through the market producer, Kafka, the tick
   ingestor (``market.ticks``, bars) and the feature calculator (Redis, ``features``); the
   market's time line lies hours in the past, so every stored trade is history to Airflow.
3. Airflow (``hft airflow standalone`` under the project's supervisor) is started once an
   hour of live trades is stored. The hourly schedule's own ``validate_market_data`` run (or,
   when this hour's scheduled run happened under an earlier test, one REST trigger without
   config, as the UI's button sends it) validates the latest complete hour of the stored data
   (the live trades) and emits ``market_data_validated``; from there no one triggers anything:
   ``backfill_features`` backfills that hour and measures drift (``HFT_DRIFT_RETRAIN_THRESHOLD=0``: any measured shift) and emits
   ``features_drifted``; ``retrain_models`` trains from the store (history plus what was
   collected, budget 0.1 min) and emits ``model_challenger``; ``promote_model`` waits until the
   API has scored five live bars with champion and challenger, then gates.
4. The API serves the promoted version (``/ready``'s ``model_version``).

The gates are opened on purpose (``HFT_PROMOTION_MARGIN_AUC=-1``, buy/sell thresholds 1/0 so
neither model trades in a backtest or the live record, ``HFT_SHADOW_AUC_TOLERANCE=1``): two
models trained for seconds differ by noise, and this test is about the loop, not about which
model wins (the gates' decisions have their own tests). The live gate still needs its five
shared live decisions. A failure prints every DAG run of the test with its task states, the
failed tasks' logs, the shadow counts and the API's state.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from bench.pipeline import Rig, bench_symbols, replay_trades, write_trade_files
from hft.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

RATE, SPEED = 50, 60.0  # trades per wall second; market minutes per wall minute (a 1m bar a second)
REPLAY_S = 900  # trades for 15 wall minutes (15 market hours)
HISTORY_BARS = 1500
MIN_LIVE = 5
BUDGET_MIN = 0.1
DAGS = ("validate_market_data", "backfill_features", "retrain_models", "promote_model")
LOOP_TIMEOUT_S = 1200  # 4-5 min when no task retries


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _seed_history(settings: Settings, data_dir: Path, names: dict[str, str], first_open: pd.Timestamp) -> str:
    """Real 1m klines re-timed to end one bar before ``first_open``, with their OHLCV features."""
    from hft.features import FEATURE_SPEC_OHLCV, compute_features
    from hft.features.offline import upsert_features
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    step = pd.Timedelta("1min")
    start = first_open
    with db.connect(settings) as conn:
        for real, name in names.items():
            path = next((data_dir / "klines_1m").glob(f"{real}_1m_ohlcv_*.csv.gz"))
            bars = read_ohlcv_csv(path).iloc[-HISTORY_BARS:]
            bars.index = bars.index + (first_open - step - bars.index[-1])
            upsert_klines(conn, bars, name, "1m")
            feats = compute_features(bars, FEATURE_SPEC_OHLCV).dropna()
            upsert_features(conn, name, "1m", feats, FEATURE_SPEC_OHLCV.version)
            start = min(start, bars.index[0])
    return start.isoformat()


def _evenly_per_symbol(trades: dict[str, list[Any]], start_ms: int) -> dict[str, list[Any]]:
    """Each symbol's recorded trades (ids in order) spread evenly over the replay's market span.

    Spacing all trades by their global order (``replay_trades(rate=...)``) leaves a symbol
    without a trade for a whole 1m bar where the recording holds a burst of the other's, and the
    bars check rightly reports that bar missing."""
    span_ms = int(REPLAY_S * 1000 * SPEED)
    out = {}
    for sym, got in trades.items():
        step = span_ms / len(got)
        out[sym] = [
            replace(t, trade_time_ms=start_ms + int(i * step), event_time_ms=start_ms + int(i * step))
            for i, t in enumerate(got)
        ]
    return out


class Loop:
    """What the test watches: Airflow's REST API, the live record, the API; and what it prints."""

    def __init__(self, settings: Settings, rig: Rig, model: str, started: datetime) -> None:
        self.settings = settings
        self.rig = rig
        self.model = model
        self.started = started
        self.api: Any = None
        self.timings: dict[str, float] = {}
        self.retries: set[str] = set()
        self.t0 = time.monotonic()

    def mark(self, what: str) -> None:
        self.timings[what] = round(time.monotonic() - self.t0, 1)
        print(f"[loop +{self.timings[what]:6.1f} s] {what}", flush=True)

    # -- Airflow -----------------------------------------------------------------------------
    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self.api.ok("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")

        def since(r: dict[str, Any]) -> datetime:
            # a scheduled run's run_after is its interval's end (before the test); when it was
            # queued or started is what tells this test's runs from earlier ones
            times = [r.get(k) for k in ("queued_at", "start_date", "run_after")]
            return max(datetime.fromisoformat(t) for t in times if t)

        return [r for r in body["dag_runs"] if since(r) >= self.started]

    def describe(self) -> str:
        """Every DAG run since the test started, its tasks' states, and the logs of failed tasks."""
        out = []
        for dag_id in DAGS:
            try:
                runs = self.runs(dag_id)
            except Exception as exc:  # a diagnosis must not hide the failure it explains
                out.append(f"{dag_id}: (no runs: {exc!r})")
                continue
            if not runs:
                out.append(f"{dag_id}: no run")
            for r in runs:
                try:
                    tasks = self.api.tasks(dag_id, r["dag_run_id"])
                except Exception as exc:  # see above
                    out.append(f"{dag_id} {r['dag_run_id']}: {r['state']} (tasks: {exc!r})")
                    continue
                states = {t: ti["state"] for t, ti in tasks.items()}
                out.append(f"{dag_id} {r['dag_run_id']} ({r.get('run_type')}): {r['state']} {states}")
                for t, ti in tasks.items():
                    if ti["state"] in ("failed", "up_for_retry", "upstream_failed") or (
                        ti["state"] == "skipped" and t in ("publish", "check_drift")
                    ):
                        out.append(f"--- {dag_id}.{t} log (tail) ---\n{self.log_tail(dag_id, r, t, ti)}")
        out.append(f"shadow record: {self.shadow_counts()}")
        out.append(f"API /ready: {self.rig.api_ready()}")
        logs = self.settings.home_dir / "logs"
        for name in ("api", "feature-calculator", "tick-ingestor"):
            path = logs / f"{name}.log"
            if path.exists():
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if " alembic." not in ln]
                out.append(f"--- {name}.log (tail) ---\n" + "\n".join(lines[-25:]))
        return "\n".join(out)

    def log_tail(self, dag_id: str, run: dict[str, Any], task: str, ti: dict[str, Any]) -> str:
        """The last 3,000 characters of a task's latest try's log ("" when Airflow cannot give it)."""
        try:
            log = self.api.log(dag_id, run["dag_run_id"], task, max(1, int(ti["try_number"])))
        except Exception:  # a diagnosis must not hide the failure it explains
            return ""
        return str(log[-3000:])

    def fail(self, why: str) -> None:
        # the reason last as well: a CI log keeps a failure's first and last lines
        pytest.fail(f"{why}\ntimings {self.timings}\n{self.describe()}\nFAILED STEP: {why}")

    def wait(self, what: str, check: Callable[[], Any], timeout: float, step: float = 3.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except (httpx.HTTPError, OSError, KeyError, ValueError):
                value = None
            if value:
                self.mark(what)
                return value
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout:.0f} s")
            time.sleep(step)

    def finished_run(
        self, dag_id: str, run_type: str | None = None, after: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The first run of ``dag_id`` since the start (and, with ``after``, queued after that
        upstream run started: an asset event left by an earlier ``airflow dags test`` in this
        metadata database also becomes a run) that finished. Fails the test on a failed run. A
        task waiting to retry is what the DAGs are built for (a busy machine, a restarted
        service), so it does not fail the loop by itself: its failed try's log is printed once,
        and the waits below leave room for one retry."""
        for r in self.runs(dag_id):
            if run_type and r.get("run_type") != run_type:
                continue
            if after and datetime.fromisoformat(r["run_after"]) < datetime.fromisoformat(after["start_date"]):
                if r["state"] in ("queued", "running"):  # not this loop's: it would hold the CPU
                    self.api.ok("PATCH", f"/dags/{dag_id}/dagRuns/{r['dag_run_id']}", {"state": "failed"})
                    self.mark(f"stopped {dag_id} {r['dag_run_id']}: queued before this loop's event")
                continue
            if r["state"] == "failed":
                self.fail(f"{dag_id} run {r['dag_run_id']} failed")
            tasks = self.api.tasks(dag_id, r["dag_run_id"])
            for t, ti in tasks.items():
                key = f"{dag_id}.{t} try {ti.get('try_number')}"
                if ti["state"] == "up_for_retry" and key not in self.retries:
                    self.retries.add(key)
                    self.mark(
                        f"{key} failed and waits to retry; its log (tail):\n{self.log_tail(dag_id, r, t, ti)}"
                    )
            if r["state"] == "success":
                return r
        return None

    # -- the live record and the API -----------------------------------------------------------
    def shadow_counts(self) -> dict[str, int]:
        from hft.storage import db

        try:
            with db.connect(self.settings, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT role || ' v' || model_version, count(*) FROM trading.shadow_predictions "
                    "WHERE model_name = %s AND symbol = ANY(%s) GROUP BY 1 ORDER BY 1",
                    (self.model, self.rig.symbols),
                ).fetchall()
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            return {f"error {exc!r}": 0}
        return {str(k): int(n) for k, n in rows}

    def served_version(self) -> str | None:
        ok, body = self.rig.api_ready()
        return str(json.loads(body).get("model_version")) if ok else None


@pytest.fixture
def loop_env(
    stack: Any, stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The test stack migrated (market and Airflow metadata), fresh symbols and a fresh model name;
    every process stopped and this run's rows removed afterwards."""
    from hft.devstack.airflow import migrate_metadata
    from hft.devstack.supervisor import Supervisor
    from hft.storage import db

    db.migrate(stack_settings)
    migrate_metadata(stack_settings)
    Supervisor(stack_settings).stop()  # a supervisor left by an earlier test runs other programs
    names = bench_symbols()
    rig = Rig(stack_settings, names, bar_interval="1m")
    state: dict[str, Any] = {
        "rig": rig,
        "names": names,
        "model": f"hft-loop-{next(iter(names.values()))[-4:]}",
    }
    yield state
    sup = state.get("sup")
    if sup is not None:
        sup.stop()
    rig.stop_all()
    rig.delete_rows()
    with contextlib.suppress(Exception), db.connect(stack_settings, autocommit=True) as conn:
        conn.execute("DELETE FROM trading.shadow_predictions WHERE symbol = ANY(%s)", (rig.symbols,))


def test_trades_to_validated_features_to_retrain_to_shadow_to_promotion_to_serving(
    loop_env: dict[str, Any],
    stack_settings: Settings,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from hft.config import use_mlflow
    from hft.devstack.airflow import admin_passwords_file, airflow_url
    from hft.devstack.supervisor import Supervisor
    from hft.ml.train import train_and_register_from_store
    from tests.integration.orchestration.test_rest_triggers import AirflowApi

    rig: Rig = loop_env["rig"]
    names: dict[str, str] = loop_env["names"]
    model: str = loop_env["model"]
    started = datetime.now(UTC)
    loop = Loop(stack_settings, rig, model, started)

    # 1. history, the replay's trades, the settings every process shares
    # the market's time line: 15 hours that end before the wall clock's (every trade is history)
    market_start = _floor_hour(started) - timedelta(hours=17)
    first_open = pd.Timestamp(market_start)
    train_start = _seed_history(stack_settings, data_dir, names, first_open)
    start_ms = int(first_open.timestamp() * 1000)
    trades = _evenly_per_symbol(replay_trades(data_dir, names, n=RATE * REPLAY_S), start_ms)
    write_trade_files(trades, rig.source_dir)
    env = {
        "HFT_MARKET": "replay",
        "HFT_SYMBOLS": json.dumps(rig.symbols),
        "HFT_BAR_INTERVAL": "1m",
        "HFT_MODEL_NAME": model,
        "HFT_TRAIN_START": train_start,
        "HFT_TRAIN_END": (started + timedelta(days=1)).isoformat(),
        "HFT_TRAIN_BUDGET_MINUTES": str(BUDGET_MIN),
        "HFT_DRIFT_RETRAIN_THRESHOLD": "0",
        "HFT_PROMOTION_MARGIN_AUC": "-1",
        "HFT_SHADOW_MIN_DECISIONS": str(MIN_LIVE),
        "HFT_SHADOW_AUC_TOLERANCE": "1",
        "HFT_BUY_THRESHOLD": "1.0",
        "HFT_SELL_THRESHOLD": "0.0",
        "HFT_MODEL_POLL_S": "2",
        "HFT_LOG_LEVEL": "INFO",
    }
    for k, v in env.items():  # the supervisor's children (Airflow) inherit the environment
        monkeypatch.setenv(k, v)
    rig.extra_env.update(env)
    settings = stack_settings.model_copy(
        update={
            "symbols": rig.symbols,
            "bar_interval": "1m",
            "model_name": model,
            "buy_threshold": 1.0,
            "sell_threshold": 0.0,
        }
    )
    loop.mark(
        f"history seeded ({HISTORY_BARS} 1m bars a symbol from {train_start}), {RATE * REPLAY_S} trades written"
    )

    # 2. trades flow in
    rig.start("exchange", "--speed", f"x{SPEED:g}", "--no-loop")
    for name in ("tick-ingestor", "feature-calculator", "market-producer"):
        rig.start(name)
    rig.wait_ready(["exchange", "tick-ingestor", "feature-calculator", "market-producer"], timeout=180)
    loop.mark("replay and streamers running")

    # 3. the first champion: trained on the history alone (before any live trade)
    champion_uri = train_and_register_from_store(
        settings, rig.symbols, "1m", train_start, market_start.isoformat(), BUDGET_MIN, model_name=model
    )
    champion = champion_uri.rsplit("/", 1)[1]
    client = MlflowClient(tracking_uri=use_mlflow(settings))
    client.set_registered_model_alias(model, "champion", champion)
    client.delete_registered_model_alias(model, "challenger")
    loop.mark(f"champion v{champion} trained on the history")
    rig.start("api")
    loop.wait("the API serves the champion", lambda: loop.served_version() == champion, 240)

    # 4. an hour of live trades stored, then Airflow
    hour_done = market_start + timedelta(hours=1, minutes=1)

    def live_hour_stored() -> bool:
        from hft.storage import db

        with db.connect(stack_settings, autocommit=True) as conn:
            row = conn.execute(
                "SELECT min(t) FROM (SELECT max(open_time) AS t FROM market.bars WHERE symbol = ANY(%s) "
                "AND interval = '1m' GROUP BY symbol) x",
                (rig.symbols,),
            ).fetchone()
        return bool(row and row[0] and row[0] >= hour_done)

    loop.wait("an hour of live bars stored", live_hour_stored, 300)
    sup = Supervisor(stack_settings, names=["airflow"])
    loop_env["sup"] = sup
    sup.start()
    base = airflow_url(stack_settings)
    loop.wait(
        "Airflow's api-server", lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=5).is_success, 420
    )
    user = stack_settings.airflow_admin_user
    password = loop.wait(
        "the admin password",
        lambda: json.loads(admin_passwords_file(stack_settings).read_text()).get(user),
        60,
    )
    token = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert token.status_code == 201, token.text
    loop.api = AirflowApi(base, token.json()["access_token"])

    def parsed(dag_id: str) -> bool:
        details = loop.api.ok("GET", f"/dags/{dag_id}/details")
        return (
            bool(details["last_parsed_time"])
            and datetime.fromisoformat(details["last_parsed_time"]) >= started
        )

    for dag_id in DAGS:
        loop.wait(f"{dag_id} parsed", lambda d=dag_id: parsed(d), 180)
    for dag_id in DAGS:  # retrain_models is paused on creation (CPU-heavy): the operator switches it on
        loop.api.ok("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    # 5. the chain fires by itself: the hourly schedule's validation (on a metadata database
    # that ran this hour's already: one trigger as the UI's button sends it), then one asset
    # event after another
    parsed_at = time.monotonic()

    def validated() -> dict[str, Any] | None:
        if not loop.runs("validate_market_data") and time.monotonic() - parsed_at > 30:
            loop.api.trigger("validate_market_data", {"logical_date": None})
            loop.mark("no scheduled validation this hour: triggered one (logical_date null, no config)")
        return loop.finished_run("validate_market_data")

    validated = loop.wait("validate_market_data succeeded", validated, 420)  # one retry (2 min) fits
    vtasks = loop.api.tasks("validate_market_data", validated["dag_run_id"])
    window = loop.api.xcom("validate_market_data", validated["dag_run_id"], "partition")
    assert vtasks["publish"]["state"] == "success", loop.describe()
    assert datetime.fromisoformat(window["start"]) >= market_start, f"validated {window}: not the live trades"
    backfilled = loop.wait(
        "backfill_features succeeded (asset market_data_validated)",
        lambda: loop.finished_run("backfill_features", "asset_triggered", after=validated),
        420,  # one retry (2 min) fits
    )
    btasks = loop.api.tasks("backfill_features", backfilled["dag_run_id"])
    assert btasks["check_drift"]["state"] == "success", loop.describe()
    report = loop.api.xcom("backfill_features", backfilled["dag_run_id"], "validate_features")
    print(f"features validation: {report['summary']}")
    assert report["drift"], f"no PSI measured: {report}"
    retrained = loop.wait(
        "retrain_models succeeded (asset features_drifted)",
        lambda: loop.finished_run("retrain_models", "asset_triggered", after=backfilled),
        660,  # one retry (5 min) fits
    )
    plan = loop.api.xcom("retrain_models", retrained["dag_run_id"], "plan")
    assert plan["data"] == "store", plan
    assert str(plan.get("trigger", "")).startswith("drift"), plan
    challenger = client.get_model_version_by_alias(model, "challenger")
    assert str(challenger.version) != champion
    assert challenger.tags.get("airflow_run_id") == f"retrain_models/{retrained['dag_run_id']}"
    assert challenger.tags.get("data") == "store"

    # the challenger is shadow-scored on live bars beside the champion
    loop.wait(
        f"{MIN_LIVE} live bars scored by the challenger v{challenger.version}",
        lambda: loop.shadow_counts().get(f"challenger v{challenger.version}", 0) >= MIN_LIVE + 1,
        180,
        step=2,
    )
    promoted = loop.wait(
        "promote_model succeeded (asset model_challenger)",
        lambda: loop.finished_run("promote_model", "asset_triggered", after=retrained),
        360,  # one retry (2 min) fits
    )
    waited = loop.api.xcom("promote_model", promoted["dag_run_id"], "wait_for_live_record")
    outcome = loop.api.xcom("promote_model", promoted["dag_run_id"], "promote")
    print(f"live record: {waited['why']}; promotion: {outcome}")
    assert outcome["promoted"], f"{outcome}\n{loop.describe()}"
    assert "live over" in outcome["reason"], outcome  # the live gate judged it

    # 6. the API serves the new version, and scores live bars with it as champion
    new = str(challenger.version)
    loop.wait(f"the API serves v{new}", lambda: loop.served_version() == new, 60, step=1)
    loop.wait(
        f"live bars scored by v{new} as champion",
        lambda: loop.shadow_counts().get(f"champion v{new}", 0) > 0,
        60,
        step=1,
    )
    print(f"timings {loop.timings}\nshadow record {loop.shadow_counts()}")
    assert time.monotonic() - loop.t0 < LOOP_TIMEOUT_S
