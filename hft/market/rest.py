"""Binance spot REST client for gap recovery and backfill (async, httpx).

Respects Binance's rate limits: it reads ``X-MBX-USED-WEIGHT-1M`` on every answer and waits for
the next minute before going past ``weight_budget``; on 429/418 it waits ``Retry-After``
seconds and retries. 5xx and connection errors are retried with backoff, then raised as
:class:`hft.config.TransientError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from hft.config import TransientError

log = logging.getLogger("hft.market.rest")


class BinanceRest:
    """The REST endpoints gap fill and backfill need (``/api/v3/...``)."""

    def __init__(
        self,
        base_url: str,
        weight_budget: int = 5000,
        timeout_s: float = 10.0,
        retries: int = 5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.weight_budget = weight_budget
        self.retries = retries
        self.used_weight = 0
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``/api/v3/<path>`` with rate-limit handling; return the decoded JSON."""
        query = {k: v for k, v in params.items() if v is not None}
        delay = 0.5
        for attempt in range(self.retries + 1):
            if self.used_weight >= self.weight_budget:
                wait = 60 - time.time() % 60 + 0.5
                log.warning(
                    "REST weight %d >= budget %d: waiting %.1f s", self.used_weight, self.weight_budget, wait
                )
                await asyncio.sleep(wait)
                self.used_weight = 0
            try:
                resp = await self._client.get(f"{self.base_url}/api/v3/{path}", params=query)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise TransientError(f"REST {path}: {exc!r}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            used = resp.headers.get("x-mbx-used-weight-1m")
            if used is not None and used.isdigit():
                self.used_weight = int(used)
            if resp.status_code in (418, 429):
                wait = float(resp.headers.get("retry-after", "60"))
                log.warning("REST %s answered %d: waiting %.0f s (Retry-After)", path, resp.status_code, wait)
                await asyncio.sleep(wait)
                continue
            if resp.status_code >= 500:
                if attempt == self.retries:
                    raise TransientError(f"REST {path}: HTTP {resp.status_code}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if resp.status_code >= 400:
                raise ValueError(f"REST {path} {query}: HTTP {resp.status_code} {resp.text[:200]}")
            return resp.json()
        raise TransientError(f"REST {path}: still rate limited after {self.retries} retries")

    async def historical_trades(
        self, symbol: str, from_id: int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Trades from ``from_id`` on (``/api/v3/historicalTrades``)."""
        rows: list[dict[str, Any]] = await self.get(
            "historicalTrades", symbol=symbol, fromId=from_id, limit=limit
        )
        return rows

    async def recent_trades(self, symbol: str, limit: int = 500) -> list[dict[str, Any]]:
        """The latest trades (``/api/v3/trades``)."""
        rows: list[dict[str, Any]] = await self.get("trades", symbol=symbol, limit=limit)
        return rows

    async def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Aggregate trades by id or time (``/api/v3/aggTrades``)."""
        rows: list[dict[str, Any]] = await self.get(
            "aggTrades", symbol=symbol, fromId=from_id, startTime=start_ms, endTime=end_ms, limit=limit
        )
        return rows

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[list[Any]]:
        """Klines (``/api/v3/klines``), Binance's 12-column rows."""
        rows: list[list[Any]] = await self.get(
            "klines", symbol=symbol, interval=interval, startTime=start_ms, endTime=end_ms, limit=limit
        )
        return rows

    async def exchange_info(self) -> dict[str, Any]:
        """Symbols and rate limits (``/api/v3/exchangeInfo``)."""
        info: dict[str, Any] = await self.get("exchangeInfo")
        return info
