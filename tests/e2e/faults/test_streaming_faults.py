"""Faults while the recorded trades replay at a steady rate through the whole streaming path.

Replay exchange → market producer → broker → tick ingestor + feature calculator → model server
→ trading bot → Celery worker, each a real process under the project's supervisor; the calculator
warms up from real 1m klines, and the bot buys on every closed bar. During one replay: WebSocket
drops, skipped and malformed messages (the exchange's fault injection), a Redis restart, a
PostgreSQL restart, and SIGKILL of each streamer, the worker, the API and the bot in turn. At the
end: every replayed trade is stored exactly once, every bar the trades closed was closed
(announced on ``hft:bars:closed``) with its features row, order intents were filled and none
twice, and the API is ready again.

Kafka's own faults (a broker SIGKILLed, a cluster leader lost, a long-stopped consumer) have
their tests in ``test_kafka_faults.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hft.devstack.stack import Stack

from .conftest import (
    SERVING,
    SERVING_ENV,
    SUPERVISED,
    Streaming,
    check_end_state,
    closed_buckets,
    wait_for_bar_close,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def test_replay_survives_ws_faults_sigkills_redis_and_postgres_restarts(
    streaming: Any, registered_model: dict[str, str], clean_book: Any
) -> None:
    # one pass of the recording (~34,000 trades) in ~130 s; 1m bars close every 12 s
    st: Streaming = streaming("x5", names=SUPERVISED + SERVING, env=SERVING_ENV)
    n = sum(len(v) for v in st.trades.values())
    stack = Stack(st.settings)
    wait_until(lambda: st.stored_count() > 200, "ticks to flow into market.ticks", timeout=180)
    during: dict[str, bool] = {}

    def replaying(fault: str) -> None:
        during[fault] = not st.rig.exchange_status().get("finished", True)

    # 1. the WebSocket: skipped messages (gaps, filled through REST), drops, malformed frames
    st.faults(skip_every=300, skip=4, malformed_every=500)
    time.sleep(3)
    st.faults(skip_every=0, drop_every=1000)
    time.sleep(3)
    st.faults(drop_every=0, malformed_every=0)
    # the last drop_every drop may have just closed the connection: drop once the producer is back
    # (a reconnect takes its backoff); a producer that never reconnects fails here
    wait_until(
        lambda: st.drop()["dropped"] >= 1, "the market producer's WebSocket to drop", timeout=30, interval=0.5
    )
    replaying("websocket")

    # 2. Redis restart (right after a bar closed, so the announcement stream is read up to it)
    wait_for_bar_close(st)
    replaying("redis restart")
    stack.redis.stop()
    time.sleep(1)
    stack.redis.start()

    # 3. PostgreSQL restart
    replaying("postgres restart")
    stack.postgres.stop()
    time.sleep(1)
    stack.postgres.start()

    # 4. SIGKILL each process in turn; the supervisor restarts it (not waiting for each one's
    # start-up, which takes tens of seconds on a loaded machine, so every kill hits the replay)
    for name in ["market-producer", "tick-ingestor", "feature-calculator", "worker", "api", "trading-bot"]:
        replaying(f"kill {name}")
        st.kill(name, wait_loop=False)
        time.sleep(1)

    # the replay runs to its end and everything catches up
    wait_until(lambda: st.rig.exchange_status().get("finished", False), "the replay to finish", timeout=300)
    status = st.rig.exchange_status()
    assert sum(v["count"] for v in status["published"].values()) == n
    # on timeout, go on: the checks below say what is missing
    wait_until(lambda: st.stored_count() >= n, f"{n} trades in market.ticks", timeout=120, fail=False)
    want_bars = {(sym, ot) for sym, trades in st.trades.items() for ot in closed_buckets(trades)}
    wait_until(lambda: want_bars <= set(st.bars.seen), "every bar closed", timeout=180, fail=False)
    time.sleep(2)  # a last batch in flight
    check_end_state(st, features_every_bar=True)
    assert st.rig.metrics("market-producer"), "the market producer serves /metrics again"
    # the serving side came back too: the API is ready again and the bot's intents were filled
    wait_until(st.api_ready, "the model server's /ready to answer 200 again", timeout=120)
    if not wait_until(lambda: any(s == "filled" for _, s in st.intents()), "", timeout=60, fail=False):
        pytest.fail(
            f"no filled order intent after 60 s: intents {st.intents()}\n"
            + st.diagnose("trading-bot", "worker", "api", lines=20)
        )
    assert st.rig.metrics("trading-bot"), "the trading bot serves /metrics again"
    # the faults hit a running replay (on a slow machine the replay could end first: then this says so)
    assert all(during.values()), f"faults after the replay ended: {[k for k, v in during.items() if not v]}"
