"""The trading bot's loop: closed bars → a prediction → risk checks → order intent → Celery.

It reads the feature calculator's Redis stream ``hft:bars:closed`` in the consumer group
``trading-bot`` (entries are acked after handling; entries older than two bars are skipped,
since acting on a stale bar is worse than not acting). With ``api_predict_ahead`` (the default)
the API scores each closed bar as it is announced and announces the score on ``hft:bars:scored``;
the bot reads that stream in the same group and decides on the score it carries, with no
request. A closed bar whose score has not come after ``bot_score_wait_ms`` is decided by asking
``POST /predict`` (the API down or behind, predict-ahead off in the API). Each bar goes through
:class:`hft.trading.bot.TradingBot`, which checks the stored bot state (the kill switch of
``hft bot halt``) before every intent. Intent ids go to the worker as ``orders.simulate``.
Metrics: tick-to-signal latency (the receive time of the tick that closed the bar to the
decision) and its three legs, decisions by reason, predict errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import redis
from celery import Celery
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import OperationalError

from hft.bus.runtime import Loop
from hft.config import Settings, TransientError, use_mlflow
from hft.features.bars import interval_ns
from hft.features.calculator import CLOSED_STREAM, PARTIAL_KEY
from hft.storage.db import engine
from hft.trading import store
from hft.trading.bot import TradingBot, bar_event_from_stream
from hft.trading.scoring import SCORED_STREAM, prediction_from_scored
from hft.trading.strategy import model_move_bps

log = logging.getLogger(__name__)
GROUP = "trading-bot"

TICK_TO_SIGNAL = Histogram(
    "trading_bot_tick_to_signal_seconds",
    "Receive time of the bar-closing tick to the bot's decision",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# tick→signal in three legs (docs/bench.md): the calculator, the Redis stream, the bot and /predict
_LEG_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
LEG_ANNOUNCE = Histogram(
    "trading_bot_leg_announce_seconds",
    "Bar-closing tick received -> closed-bar entry published (calculator: close, features, "
    "online + offline writes)",
    buckets=_LEG_BUCKETS,
)
LEG_SCORE = Histogram(
    "trading_bot_leg_score_seconds",
    "Closed-bar entry published -> the API's score of it published (predict-ahead: online row read, "
    "window, model)",
    buckets=_LEG_BUCKETS,
)
LEG_STREAM = Histogram(
    "trading_bot_leg_stream_seconds",
    "The entry the bot decides on published -> read by the bot (the scored entry, or the closed one)",
    buckets=_LEG_BUCKETS,
)
LEG_DECIDE = Histogram(
    "trading_bot_leg_decide_seconds",
    "Entry read -> signal (the score it carries, or the wait and POST /predict; the risk checks and "
    "the intent come after)",
    buckets=_LEG_BUCKETS,
)
PREDICTIONS = Counter(
    "trading_bot_predictions",
    "Where a decision's prediction came from (scored: the API's announcement; request: POST /predict)",
    ["source"],
)
DECISIONS = Counter(
    "trading_bot_decisions", "Decisions by outcome (intent or the reason for none)", ["reason"]
)
INTENTS = Counter("trading_bot_intents", "Order intents sent to the worker", ["symbol", "side"])
PREDICT_ERRORS = Counter("trading_bot_predict_errors", "Failed /predict calls", ["kind"])
SKIPPED = Counter("trading_bot_bars_skipped", "Closed bars not acted on", ["why"])
STATE = Gauge("trading_bot_halted", "1 while the stored bot state is halted")
HEARTBEAT = Gauge("trading_bot_heartbeat_timestamp_seconds", "Last loop heartbeat (unix time)")


@dataclass(frozen=True)
class _Held:
    """A closed-bar entry waiting for the API's score of its bar."""

    entry_id: bytes
    fields: dict[bytes, bytes]
    read_ns: int
    deadline_ns: int


def _registry_client(settings: Settings) -> Any:
    """The model registry's client, made at start-up: importing MLflow takes 1-5 s, which the first
    decision after a buy waited for when the lifecycle first asked for the model's horizon (tick→signal
    p95 5.7 s in bench/latency.py); one lookup per model version is then one HTTP request. A
    registry that does not answer must not hold the decision loop for MLflow's default retries
    (minutes): one retry, 3 s per request, then the bar holds and asks again next bar."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=use_mlflow(settings))


def _tags(mv: Any) -> dict[str, str]:
    """A registry model version's tags as plain strings."""
    return {str(k): str(v) for k, v in (mv.tags or {}).items()}


class PredictError(RuntimeError):
    """The model server did not answer with a prediction."""


class BotProcess(Loop):
    """The loop around :class:`hft.trading.bot.TradingBot`: read → decide → ack."""

    name = "trading bot"
    heartbeat = HEARTBEAT
    transient = (redis.RedisError, OperationalError, TransientError)

    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        super().__init__(stop)
        self.s = settings
        self.redis = redis.Redis.from_url(settings.redis_dsn, socket_timeout=5)
        self.http = httpx.Client(base_url=settings.api_base_url, timeout=2.0)
        # the worker's task by name: streamers never import workers
        self.celery = Celery("trading-bot", broker=settings.redis_dsn, backend=settings.redis_dsn)
        self.engine = engine(settings)
        self.bot = TradingBot(
            settings,
            self.engine,
            self._predict,
            self._enqueue,
            time.time_ns,
            move_bps=self._move_bps,
            horizon_bars=self._horizon_bars,
        )
        # the label configuration (horizon, label kind) of each model version, from its registry tags
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        self._registry = _registry_client(settings)
        self._warm_registry()
        self._online: Any = None  # hft.features.online.OnlineFeatures, on first use
        self.max_age_ns = 2 * interval_ns(settings.bar_interval)
        self.consumer = f"bot-{settings.port_base}"
        # newest bar decided on per (symbol, interval): the calculator may announce a bar again
        # (a retry or a restart before its offsets were committed); one decision per bar
        self._decided: dict[tuple[str, str], int] = {}
        # /predict of the other symbols' bars in one read runs ahead, each on its own connection,
        # so one bar's decision does not wait for another's (docs/bench.md, "tick→signal, leg by leg")
        self._pool = ThreadPoolExecutor(
            max_workers=max(len(settings.symbols), 1), thread_name_prefix="predict"
        )
        self._local = threading.local()
        self._ahead: dict[str, Future[dict[str, Any]]] = {}
        # with the API's predict-ahead: closed bars waiting for their score, by bar
        self.scored = settings.api_predict_ahead
        self.score_wait_ns = int(settings.bot_score_wait_ms * 1e6)
        self._held: dict[tuple[tuple[str, str], int], _Held] = {}
        self._given: dict[str, dict[str, Any]] = {}  # symbol -> the prediction to decide on now

    def _warm_registry(self) -> None:
        """Read the champion's label configuration now, at start-up: MLflow's first request in a
        process takes seconds (4.3 s on a quiet machine, then 14 ms a request), and it used to be
        the first decision after a buy that paid it, with every bar behind it waiting (tick→signal
        p95 5.7-10 s in bench/latency.py). A registry that is down now is asked again when needed."""
        name = self.s.model_name
        try:
            mv = self._registry.get_model_version_by_alias(name, "champion")
        except Exception as exc:  # no champion yet, or the registry down: nothing to warm
            log.info("model registry not read at start-up (%s)", exc)
            return
        self._labels[(name, str(mv.version))] = _tags(mv)

    def _label_config(self, name: str, version: str) -> dict[str, str] | None:
        """The version's tags (``horizon``, ``label_kind``, ``barrier_*``: what ``hft train`` sets);
        None when the registry cannot say now (not cached: asked again next bar)."""
        key = (name, version)
        if key not in self._labels:
            if not name or not version:
                return {}
            try:
                mv = self._registry.get_model_version(name, version)
            except Exception as exc:  # the registry down: no edge estimate, the bar holds
                log.warning("model %s/%s: no label configuration (%s)", name, version, exc)
                return None
            self._labels[key] = _tags(mv)
        return self._labels[key]

    def _horizon_bars(self, name: str, version: str) -> int | None:
        """The horizon (bars) of model version ``name``/``version``: its tag ``horizon`` (what the bot's
        time exit waits for, as the backtest does); 1 for a version without one (a model from before
        issue 23 item 1: the 1-bar direction); None when the registry cannot say now."""
        label = self._label_config(name, version)
        if label is None:
            return None
        try:
            return max(1, int(label.get("horizon", 1) or 1))
        except (TypeError, ValueError):
            return 1

    def _move_bps(self, symbol: str, prediction: dict[str, Any]) -> float:
        """Expected move of the model's trade (bps): ``vol_64`` of the symbol's online feature row
        (the row the model scored) at the model's horizon (:func:`hft.trading.strategy.model_move_bps`,
        what ``hft evaluate``'s backtest uses); NaN when either is unknown (the rule then holds)."""
        label = self._label_config(
            str(prediction.get("model_name", "")), str(prediction.get("model_version", ""))
        )
        if label is None:
            return float("nan")
        try:
            if self._online is None:
                from hft.features.online import OnlineFeatures

                self._online = OnlineFeatures(self.s)
            latest = self._online.latest(symbol)
        except Exception as exc:
            log.warning("%s: no online features for the expected move (%s)", symbol, exc)
            return float("nan")
        vol = latest[1].get("vol_64") if latest is not None else None
        return model_move_bps(vol, label)

    def _predict(self, symbol: str) -> dict[str, Any]:
        given = self._given.pop(symbol, None)
        if given is not None:
            PREDICTIONS.labels("scored").inc()
            return given
        PREDICTIONS.labels("request").inc()
        ahead = self._ahead.pop(symbol, None)
        if ahead is not None:
            return ahead.result()
        return self._post_predict(self.http, symbol)

    def _predict_ahead(self, symbol: str) -> dict[str, Any]:
        client = getattr(self._local, "http", None)
        if client is None:  # one client per pool thread
            client = self._local.http = httpx.Client(base_url=self.s.api_base_url, timeout=2.0)
        return self._post_predict(client, symbol)

    def _post_predict(self, client: Any, symbol: str) -> dict[str, Any]:
        try:
            r = client.post("/predict", json={"symbol": symbol})
        except httpx.HTTPError as exc:
            PREDICT_ERRORS.labels("unreachable").inc()
            raise PredictError(f"model server unreachable: {exc}") from exc
        if r.status_code != 200:
            kind = (
                r.json().get("error", str(r.status_code))
                if r.headers.get("content-type", "").startswith("application/json")
                else str(r.status_code)
            )
            PREDICT_ERRORS.labels(kind).inc()
            raise PredictError(f"/predict {symbol}: {r.status_code} {r.text[:200]}")
        body: dict[str, Any] = r.json()
        return body

    def _enqueue(self, intent_id: str) -> None:
        self.celery.send_task("orders.simulate", args=[intent_id])

    def _close_price(self, symbol: str, interval: str, open_time: datetime) -> float | None:
        with self.engine.connect() as conn:
            price = store.bar_close(conn, symbol, interval, open_time)
            if price is not None:
                return price
        # the ingestor may not have written the bar yet: the next bar opened at (about) this close
        partial = self.redis.hgetall(PARTIAL_KEY.format(symbol=symbol))
        if partial and b"open" in partial:
            return float(partial[b"open"])
        with self.engine.connect() as conn:
            last = store.last_trade(conn, symbol)
        return last.price if last else None

    def ensure_group(self) -> None:
        """Create the consumer groups at the streams' ends (new bars only) when missing."""
        for stream in self._streams():
            try:
                self.redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _streams(self) -> list[str]:
        return [CLOSED_STREAM, SCORED_STREAM] if self.scored else [CLOSED_STREAM]

    @staticmethod
    def _bar_key(fields: dict[bytes, bytes]) -> tuple[tuple[str, str], int]:
        """An entry's (symbol, interval) and bar open time (ns)."""
        key = (fields.get(b"symbol", b"").decode(), fields.get(b"interval", b"").decode())
        return key, int(fields.get(b"open_time_ns", b"0"))

    def _skip_reason(self, fields: dict[bytes, bytes], read_ns: int) -> str | None:
        """Why an entry is not acted on before looking at its price: too old, or its bar decided."""
        published = int(fields.get(b"published_ns", b"0"))
        if published and read_ns - published > self.max_age_ns:
            return "stale"
        key, open_ns = self._bar_key(fields)
        if open_ns and open_ns <= self._decided.get(key, 0):
            return "already_decided"
        return None

    def _to_decide(self, fields: dict[bytes, bytes], read_ns: int) -> str | None:
        """The symbol of an entry the bot will ask the model about, else None."""
        symbol = fields.get(b"symbol", b"").decode()
        if (
            self._skip_reason(fields, read_ns) is not None
            or fields.get(b"has_features", b"1") == b"0"
            or symbol not in self.s.symbols
        ):
            return None
        return symbol

    def predict_ahead(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Start ``/predict`` for every symbol after the first one with a bar to decide in this read
        (the first is asked inline, as a lone bar is); a symbol with two bars here is asked inline."""
        now = time.time_ns()
        symbols = [sym for _id, f in entries if (sym := self._to_decide(f, now)) is not None]
        for sym in symbols[1:]:
            if sym != symbols[0] and symbols.count(sym) == 1:
                self._ahead[sym] = self._pool.submit(self._predict_ahead, sym)

    def forget_ahead(self) -> None:
        """Drop predictions started ahead whose bar was not decided after all (e.g. no close price)."""
        for fut in self._ahead.values():
            fut.cancel()
        self._ahead.clear()

    def handle(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        read_ns: int | None = None,
        prediction: dict[str, Any] | None = None,
    ) -> None:
        """Decide on one closed bar (on ``prediction`` when given: a scored entry's, else /predict's)."""
        read_ns = read_ns or time.time_ns()
        published = int(fields.get(b"published_ns", b"0"))
        if (why := self._skip_reason(fields, read_ns)) is not None:
            SKIPPED.labels(why).inc()
            return
        key, open_ns = self._bar_key(fields)
        event = bar_event_from_stream(fields, self._close_price)
        if event is None:
            SKIPPED.labels("no_features_or_price").inc()
            return
        if event.symbol not in self.s.symbols:
            SKIPPED.labels("symbol").inc()
            return
        if prediction is not None:
            self._given[event.symbol] = prediction
        try:
            result = self.bot.on_bar(event)
        except PredictError as exc:
            DECISIONS.labels("predict_failed").inc()
            log.warning("%s", exc)
            return
        finally:
            self._given.pop(event.symbol, None)
        self._decided[key] = max(open_ns, self._decided.get(key, 0))
        if result.tick_to_signal_ns is not None:
            TICK_TO_SIGNAL.observe(result.tick_to_signal_ns / 1e9)
            if published and event.receive_time_ns:
                LEG_ANNOUNCE.observe(max(published - event.receive_time_ns, 0) / 1e9)
                scored_ns = int(fields.get(b"scored_ns", b"0"))
                if scored_ns:
                    LEG_SCORE.observe(max(scored_ns - published, 0) / 1e9)
                LEG_STREAM.observe(max(read_ns - (scored_ns or published), 0) / 1e9)
                LEG_DECIDE.observe(max(event.receive_time_ns + result.tick_to_signal_ns - read_ns, 0) / 1e9)
        DECISIONS.labels(result.decision.reason).inc()
        STATE.set(1 if result.decision.state.value == "halted" else 0)
        if result.intent_id and result.decision.intent is not None:
            INTENTS.labels(event.symbol, result.decision.intent.side.value).inc()
            log.info(
                "intent %s %s %s qty %.8f p_up %.3f",
                result.intent_id,
                event.symbol,
                result.decision.intent.side.value,
                result.decision.intent.quantity,
                result.decision.intent.prob_up,
            )

    def run_once(self) -> int:
        """Read up to 100 entries (waiting a second at most, less while a bar waits for its score),
        decide on each bar once, ack each entry after it."""
        block = 1000
        if self._held:
            due = min(h.deadline_ns for h in self._held.values())
            block = int(min(max((due - time.time_ns()) / 1e6, 1), 1000))
        batches: Any = self.redis.xreadgroup(
            GROUP, self.consumer, dict.fromkeys(self._streams(), ">"), count=100, block=block
        )
        closed: list[tuple[bytes, dict[bytes, bytes]]] = []
        scored: list[tuple[bytes, dict[bytes, bytes]]] = []
        for stream, entries in batches or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            (scored if name == SCORED_STREAM else closed).extend(entries)
        if not self.scored:
            return self._decide_closed(closed)
        n = 0
        read_ns = time.time_ns()
        for entry_id, fields in closed:
            key = self._bar_key(fields)
            if key in self._held:  # the bar announced again while it waits for its score
                SKIPPED.labels("already_waiting").inc()
                self.redis.xack(CLOSED_STREAM, GROUP, entry_id)
                n += 1
            elif self._to_decide(fields, read_ns) is None:
                self.handle(entry_id, fields, read_ns)  # a skip, counted there
                self.redis.xack(CLOSED_STREAM, GROUP, entry_id)
                n += 1
            else:
                self._held[key] = _Held(entry_id, fields, read_ns, read_ns + self.score_wait_ns)
        for entry_id, fields in scored:
            held = self._held.pop(self._bar_key(fields), None)
            try:
                prediction = prediction_from_scored(fields)
            except (KeyError, ValueError) as exc:
                log.warning("scored entry %r unreadable (%s): the bar waits for /predict", entry_id, exc)
                if held is not None:
                    self._held[self._bar_key(fields)] = held
            else:
                self.handle(entry_id, fields, time.time_ns(), prediction)
                if held is not None:
                    self.redis.xack(CLOSED_STREAM, GROUP, held.entry_id)
            self.redis.xack(SCORED_STREAM, GROUP, entry_id)
            n += 1
        now = time.time_ns()
        late = [self._held.pop(k) for k, h in list(self._held.items()) if h.deadline_ns <= now]
        if late:  # no score in time: ask /predict, as without predict-ahead
            n += self._decide_closed([(h.entry_id, h.fields) for h in late], [h.read_ns for h in late])
        return n

    def _decide_closed(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], read_ns: list[int] | None = None
    ) -> int:
        """Decide on closed-bar entries through ``POST /predict`` (other symbols' bars asked ahead);
        ``read_ns`` are the times the entries were read (default: now, each)."""
        self.predict_ahead(entries)
        n = 0
        try:
            for i, (entry_id, fields) in enumerate(entries):
                self.handle(entry_id, fields, read_ns[i] if read_ns else None)
                self.redis.xack(CLOSED_STREAM, GROUP, entry_id)
                n += 1
        finally:
            self.forget_ahead()
        return n

    def on_transient(self, exc: BaseException) -> None:
        if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
            self.ensure_group()  # Redis restarted empty

    def run(self) -> None:
        """Read the stream until stopped; ack each entry after handling it."""
        self.ensure_group()
        super().run()

    def close(self) -> None:
        self.http.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
