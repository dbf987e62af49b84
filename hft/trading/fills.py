"""Paper fills: a market order fills at the next trade price with slippage and a fee.

Slippage moves the price against the taker (buy higher, sell lower) by ``slippage_bps``.
The fee is charged in the quote currency on the filled notional (Binance spot: 0.1 % taker
by default). Positions use average-cost accounting; realised PnL excludes fees, which are
kept apart so reports can show both.
"""

from __future__ import annotations

from dataclasses import dataclass

from hft.trading.strategy import Signal

BPS = 1e-4


@dataclass(frozen=True)
class Fill:
    """One simulated execution."""

    side: Signal
    quantity: float
    price: float
    market_price: float
    fee: float
    fee_bps: float
    liquidity: str  # "taker" (market orders) or "maker"

    @property
    def notional(self) -> float:
        """Quantity times the fill price."""
        return self.quantity * self.price

    @property
    def cash_delta(self) -> float:
        """Change in quote cash: a buy pays notional + fee, a sell receives notional - fee."""
        if self.side is Signal.BUY:
            return -(self.notional + self.fee)
        return self.notional - self.fee


def simulate_fill(
    side: Signal,
    quantity: float,
    market_price: float,
    *,
    slippage_bps: float,
    fee_bps: float,
    liquidity: str = "taker",
) -> Fill:
    """Fill ``quantity`` against ``market_price`` with slippage against the order and a fee."""
    if side is Signal.HOLD:
        raise ValueError("hold is not an order side")
    if quantity <= 0 or market_price <= 0:
        raise ValueError(f"quantity {quantity} and price {market_price} must be positive")
    direction = 1.0 if side is Signal.BUY else -1.0
    price = market_price * (1.0 + direction * slippage_bps * BPS)
    fee = quantity * price * fee_bps * BPS
    return Fill(side, quantity, price, market_price, fee, fee_bps, liquidity)


@dataclass(frozen=True)
class Position:
    """Holding of one symbol with its average cost and realised PnL so far (before fees)."""

    symbol: str
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0

    def unrealized(self, mark: float) -> float:
        """PnL of the open quantity at ``mark``."""
        return self.quantity * (mark - self.avg_price)


def apply_fill(pos: Position, fill: Fill) -> tuple[Position, float]:
    """Return the position after ``fill`` and the PnL it realised (average cost, either sign)."""
    signed = fill.quantity if fill.side is Signal.BUY else -fill.quantity
    qty, avg = pos.quantity, pos.avg_price
    realized = 0.0
    if qty == 0 or (qty > 0) == (signed > 0):
        new_qty = qty + signed
        avg = (abs(qty) * avg + abs(signed) * fill.price) / abs(new_qty)
    else:
        closed = min(abs(signed), abs(qty))
        realized = closed * (fill.price - avg) * (1.0 if qty > 0 else -1.0)
        new_qty = qty + signed
        if abs(new_qty) < 1e-12:
            new_qty, avg = 0.0, 0.0
        elif (new_qty > 0) != (qty > 0):
            avg = fill.price  # crossed through zero: the remainder opened at this price
    return Position(pos.symbol, new_qty, avg, pos.realized_pnl + realized, pos.fees + fill.fee), realized
