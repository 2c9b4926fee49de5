"""Brute-force reference of the feature views, computed straight from the raw Parquet events.

Plain Python over rows read with pyarrow (no SQL), following the definitions in
models/features/_features__models.yml and the model headers:

* transactions: one row per transaction_id, the copy ingested first (ties broken by
  transacted_at, user_id, merchant_id, device_id, amount, currency, nulls last: the order of
  models/intermediate/int_transactions_deduplicated.sql); rows missing the id, the user or a
  timestamp are dropped.
* chargebacks: one row per chargeback_id, the copy ingested first (ties by charged_back_at,
  transaction_id, reason nulls last); a transaction's chargeback is its earliest one (by
  charged_back_at, then ingested_at, then chargeback_id).
* the declared (windowed) views user_transaction_features and merchant_transaction_features:
  tests/window_reference.py over these deduplicated transactions (Reference.declared).
* merchant_chargeback_rate_30d(T): of the merchant's transactions with transacted_at in
  (T - 30d, T], the fraction whose chargeback has charged_back_at <= T; None when none.
* available_at(F) of a merchant row: the latest ingested_at of the merchant's
  transactions with transacted_at <= F and of the chargebacks that count in a window at or
  before F (charged_back_at <= F and transacted_at <= charged_back_at < transacted_at + 30d).
* user_device: per (user, device) pair, feature_at = first transacted_at, available_at =
  first ingested_at, last_ingested_at = last ingested_at.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tests.window_reference import MERCHANT_VIEW, USER_VIEW, Entity, View, entities

DAY = dt.timedelta(days=1)
MERCHANT_WINDOW = 30 * DAY


def read_rows(raw_path: Path, table: str) -> list[dict[str, Any]]:
    """Every row of `<raw_path>/<table>/*.parquet`, as dicts (the dbt source reads the same)."""
    paths = sorted((raw_path / table).glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no Parquet file in {raw_path / table}")
    rows: list[dict[str, Any]] = []
    for path in paths:
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _nulls_last(value: object) -> tuple[int, object]:
    return (1, 0) if value is None else (0, value)


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    user_id: str
    merchant_id: str | None
    device_id: str | None
    amount: Decimal | None
    currency: str | None
    transacted_at: dt.datetime
    ingested_at: dt.datetime


@dataclass(frozen=True)
class Chargeback:
    chargeback_id: str
    transaction_id: str
    charged_back_at: dt.datetime
    ingested_at: dt.datetime
    reason: str | None


def dedupe_transactions(rows: Iterable[dict[str, Any]]) -> dict[str, Transaction]:
    best: dict[str, tuple[tuple[object, ...], Transaction]] = {}
    for row in rows:
        if any(
            row[c] is None for c in ("transaction_id", "user_id", "transacted_at", "ingested_at")
        ):
            continue
        tx = Transaction(**{name: row[name] for name in Transaction.__dataclass_fields__})
        key = (
            tx.ingested_at,
            tx.transacted_at,
            tx.user_id,
            _nulls_last(tx.merchant_id),
            _nulls_last(tx.device_id),
            _nulls_last(tx.amount),
            _nulls_last(tx.currency),
        )
        kept = best.get(tx.transaction_id)
        if kept is None or key < kept[0]:
            best[tx.transaction_id] = (key, tx)
    return {tid: tx for tid, (_, tx) in best.items()}


def dedupe_chargebacks(rows: Iterable[dict[str, Any]]) -> dict[str, Chargeback]:
    best: dict[str, tuple[tuple[object, ...], Chargeback]] = {}
    for row in rows:
        if any(
            row[c] is None
            for c in ("chargeback_id", "transaction_id", "charged_back_at", "ingested_at")
        ):
            continue
        cb = Chargeback(**{name: row[name] for name in Chargeback.__dataclass_fields__})
        key = (cb.ingested_at, cb.charged_back_at, cb.transaction_id, _nulls_last(cb.reason))
        kept = best.get(cb.chargeback_id)
        if kept is None or key < kept[0]:
            best[cb.chargeback_id] = (key, cb)
    return {cid: cb for cid, (_, cb) in best.items()}


def first_chargebacks(chargebacks: Iterable[Chargeback]) -> dict[str, Chargeback]:
    """transaction_id -> its earliest chargeback."""
    first: dict[str, Chargeback] = {}
    for cb in chargebacks:
        kept = first.get(cb.transaction_id)
        if kept is None or (cb.charged_back_at, cb.ingested_at, cb.chargeback_id) < (
            kept.charged_back_at,
            kept.ingested_at,
            kept.chargeback_id,
        ):
            first[cb.transaction_id] = cb
    return first


def _prefix_max(values: list[dt.datetime]) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    for value in values:
        out.append(value if not out or value > out[-1] else out[-1])
    return out


@dataclass
class MerchantHistory:
    """One merchant's deduplicated transactions and their first chargebacks."""

    transactions: list[Transaction]
    chargeback_of: dict[str, Chargeback]
    # every chargeback (first or not) per transaction id: each marks an instant
    all_chargebacks: dict[str, list[Chargeback]] = field(default_factory=dict)
    times: list[dt.datetime] = field(init=False)
    charged: list[tuple[Transaction, Chargeback]] = field(init=False)
    _ingested_max: list[dt.datetime] = field(init=False)

    def __post_init__(self) -> None:
        self.transactions.sort(key=lambda tx: (tx.transacted_at, tx.transaction_id))
        self.times = [tx.transacted_at for tx in self.transactions]
        self._ingested_max = _prefix_max([tx.ingested_at for tx in self.transactions])
        self.charged = [
            (tx, self.chargeback_of[tx.transaction_id])
            for tx in self.transactions
            if tx.transaction_id in self.chargeback_of
        ]

    def has_history(self, at: dt.datetime) -> bool:
        return bool(self.times) and self.times[0] <= at

    def value(self, at: dt.datetime) -> float | None:
        """merchant_chargeback_rate_30d at `at`."""
        # the count of transactions in the window by bisection (the list is sorted), the
        # charged-back ones by a plain loop over the merchant's few charged-back transactions
        in_window = bisect.bisect_right(self.times, at) - bisect.bisect_right(
            self.times, at - MERCHANT_WINDOW
        )
        if in_window == 0:
            return None
        charged_back = sum(
            1
            for tx, cb in self.charged
            if at - MERCHANT_WINDOW < tx.transacted_at <= at and cb.charged_back_at <= at
        )
        return charged_back / in_window

    def counted_chargebacks(self, feature_at: dt.datetime) -> list[Chargeback]:
        """First chargebacks that count in a window at or before feature_at."""
        return [
            cb
            for tx, cb in self.charged
            if cb.charged_back_at <= feature_at
            and tx.transacted_at <= cb.charged_back_at < tx.transacted_at + MERCHANT_WINDOW
        ]

    def available_at(self, feature_at: dt.datetime) -> dt.datetime | None:
        n = bisect.bisect_right(self.times, feature_at)
        events = [self._ingested_max[n - 1]] if n else []
        events += [cb.ingested_at for cb in self.counted_chargebacks(feature_at)]
        return max(events, default=None)

    def row_instants(self) -> set[dt.datetime]:
        """A transaction enters or leaves the window, or one of its chargebacks (its first or
        any other: the model marks every one, so that stored rows are re-emitted when the
        first chargeback changes) arrives inside it."""
        out: set[dt.datetime] = set()
        for tx in self.transactions:
            out.update((tx.transacted_at, tx.transacted_at + MERCHANT_WINDOW))
            chargebacks = self.all_chargebacks.get(tx.transaction_id, [])
            if tx.transaction_id in self.chargeback_of:
                chargebacks = [*chargebacks, self.chargeback_of[tx.transaction_id]]
            for cb in chargebacks:
                if tx.transacted_at <= cb.charged_back_at < tx.transacted_at + MERCHANT_WINDOW:
                    out.add(cb.charged_back_at)
        return out

    def uses_late(self, feature_at: dt.datetime, known_at: dt.datetime) -> list[object]:
        """Events a row at feature_at depends on that were not ingested by known_at."""
        n = bisect.bisect_right(self.times, feature_at)
        late: list[object] = []
        if n and self._ingested_max[n - 1] > known_at:  # else none of them is late
            late += [tx for tx in self.transactions[:n] if tx.ingested_at > known_at]
        late += [cb for cb in self.counted_chargebacks(feature_at) if cb.ingested_at > known_at]
        return late


@dataclass(frozen=True)
class DeviceRow:
    feature_at: dt.datetime
    available_at: dt.datetime
    last_ingested_at: dt.datetime


@dataclass
class Reference:
    transactions: dict[str, Transaction]
    chargebacks: dict[str, Chargeback]
    #: declared view name -> (its View, entity key -> Entity)
    declared: dict[str, tuple[View, dict[tuple[Any, ...], Entity]]]
    merchants: dict[str, MerchantHistory]
    devices: dict[tuple[str, str], DeviceRow]
    pair_transactions: dict[tuple[str, str], list[Transaction]]


def build_reference(raw_path: Path) -> Reference:
    transactions = dedupe_transactions(read_rows(raw_path, "transactions"))
    chargebacks = dedupe_chargebacks(read_rows(raw_path, "chargebacks"))
    first = first_chargebacks(chargebacks.values())
    all_by_transaction: dict[str, list[Chargeback]] = defaultdict(list)
    for cb in chargebacks.values():
        all_by_transaction[cb.transaction_id].append(cb)
    by_merchant: dict[str, list[Transaction]] = defaultdict(list)
    by_pair: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
    for tx in transactions.values():
        if tx.merchant_id is not None:
            by_merchant[tx.merchant_id].append(tx)
        if tx.device_id is not None:
            by_pair[(tx.user_id, tx.device_id)].append(tx)
    devices = {
        pair: DeviceRow(
            feature_at=min(tx.transacted_at for tx in txs),
            available_at=min(tx.ingested_at for tx in txs),
            last_ingested_at=max(tx.ingested_at for tx in txs),
        )
        for pair, txs in by_pair.items()
    }
    return Reference(
        transactions=transactions,
        chargebacks=chargebacks,
        declared={
            view.name: (view, entities(view, (vars(tx) for tx in transactions.values())))
            for view in (USER_VIEW, MERCHANT_VIEW)
        },
        merchants={
            m: MerchantHistory(txs, first, all_by_transaction) for m, txs in by_merchant.items()
        },
        devices=devices,
        pair_transactions=dict(by_pair),
    )
