"""User functions of the example jobs (referenced from YAML as ``transforms:name``)."""

from __future__ import annotations

from typing import Any

DOLLAR_TO_EURO = 0.908


def to_euro(bid: dict[str, Any]) -> dict[str, Any]:
    """Nexmark Q1: the price in euros; rejects a bid whose price is not a number."""
    price = bid["price"]
    if not isinstance(price, int | float):
        raise ValueError(f"price must be a number, got {price!r}")
    return {
        "auction": bid["auction"],
        "bidder": bid["bidder"],
        "price_eur": round(price * DOLLAR_TO_EURO / 100, 2),
        "channel": bid["channel"],
        "date_time": bid["dateTime"],
    }
