"""Deterministic synthetic fraud / e-commerce dataset, written as raw Parquet tables.

`generate` writes ``{out_dir}/{table}/part-{i:05d}.parquet`` (zstd) for six tables. Timestamps
are ``timestamp('us')`` without time zone, meaning UTC, in whole seconds; ``start`` is the first
instant of the event-time range ``[start, start + days)``.

Tables
------
- ``users``: user_id ``usr_%08d``, signed_up_at (1 day to 3 years before start), country
  (US, GB, DE, FR, BR, IN, CA, ES; 5% null).
- ``merchants``: merchant_id ``mer_%06d``, category (grocery, electronics, travel, fashion,
  gaming, gift_cards, restaurants, digital_goods), onboarded_at (before start).
- ``devices``: device_id ``dev_`` + 16 hex chars (splitmix64 hash of user index and device
  slot), device_type (ios / android / web, also derived from the hash). One row per device: each
  user's 1-3 regular devices, then one row per new device first seen in a transaction.
- ``transactions``: transaction_id ``txn_%010d``, user_id, merchant_id, device_id (2% null),
  amount decimal(18, 2) (1% null; lognormal, median ~40, fraud ~2.5x larger, capped at 5000),
  currency ('USD'), transacted_at (event time), ingested_at (>= transacted_at).
- ``chargebacks``: chargeback_id ``cbk_%010d``, transaction_id, charged_back_at (3-60 days after
  the transaction), ingested_at (>= charged_back_at), reason (10% null).
- ``fraud_labels``: transaction_id, is_fraud, labeled_at (after transacted_at); exactly one
  label per distinct transaction.

The mess (rates are per generated transaction unless stated)
------------------------------------------------------------
- Ingestion lag: 90% of transactions land 1-120 s after the event, 8% 2 min to 6 h, 2% 1 to 10
  days (late events). Chargebacks: 85% 1 min to 1 h, 10% 1 h to 1 day, 5% 1 to 10 days.
- Duplicates: 0.5% of transactions are written twice byte-identically, another 0.5% are
  redelivered (same fields, ingested_at 1 min to 2 days later); 2% of chargeback rows (at least
  one per chunk that has chargebacks) are exact duplicates.
- Ties: ~1% of transactions copy the transacted_at of another transaction of the same user;
  25% of chargebacks are posted in a daily batch at 00:00:00, so many share a timestamp.
- Missing values: device_id 2%, amount 1%, country 5%, reason 10%.
- No history: 10% of users are never active; each active user gets at least one transaction
  (when there are enough transactions). 5% of merchants (at least one when there are two or
  more) never sell.
- Skew: user and merchant activity are lognormal (sigma 1.3 and 1.5). Users have 1-3 devices
  (50/35/15%), mostly the first; 3% of transactions come from a never-seen device.
- Fraud: ~2% of transactions; the probability scales with the merchant's risk (category factor
  times lognormal noise) and is 8x higher on a new device. 80% of fraudulent and 0.3% of
  legitimate transactions get a chargeback.
- Order: rows are shuffled within each file, so events arrive out of event-time order.

Transactions are generated in chunks of ``rows_per_file`` distinct transactions (files hold ~1%
more rows because of the duplicates), each with its own RNG derived from (seed, table, chunk
index) and fully vectorised, so memory stays flat whatever the size. Transaction ids are chunk
ranges, hence globally unique. Same arguments give identical files.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

TABLES = ("users", "merchants", "devices", "transactions", "chargebacks", "fraud_labels")
_TS = pa.timestamp("us")
_STR = pa.string()
SCHEMAS: dict[str, pa.Schema] = {
    "users": pa.schema([("user_id", _STR), ("signed_up_at", _TS), ("country", _STR)]),
    "merchants": pa.schema([("merchant_id", _STR), ("category", _STR), ("onboarded_at", _TS)]),
    "devices": pa.schema([("device_id", _STR), ("device_type", _STR)]),
    "transactions": pa.schema(
        [
            ("transaction_id", _STR),
            ("user_id", _STR),
            ("merchant_id", _STR),
            ("device_id", _STR),
            ("amount", pa.decimal128(18, 2)),
            ("currency", _STR),
            ("transacted_at", _TS),
            ("ingested_at", _TS),
        ]
    ),
    "chargebacks": pa.schema(
        [
            ("chargeback_id", _STR),
            ("transaction_id", _STR),
            ("charged_back_at", _TS),
            ("ingested_at", _TS),
            ("reason", _STR),
        ]
    ),
    "fraud_labels": pa.schema(
        [("transaction_id", _STR), ("is_fraud", pa.bool_()), ("labeled_at", _TS)]
    ),
}

MINUTE, HOUR, DAY = 60, 3600, 86_400
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "CA", "ES")
COUNTRY_P = (0.40, 0.12, 0.10, 0.08, 0.12, 0.10, 0.05, 0.03)
CATEGORY_RISK = {  # relative fraud risk by merchant category
    "grocery": 0.3,
    "electronics": 2.5,
    "travel": 1.5,
    "fashion": 1.0,
    "gaming": 2.0,
    "gift_cards": 4.0,
    "restaurants": 0.5,
    "digital_goods": 2.0,
}
CATEGORIES = tuple(CATEGORY_RISK)
DEVICE_TYPES = ("ios", "android", "web")
REASONS = (
    "fraudulent",
    "unauthorized",
    "product_not_received",
    "not_as_described",
    "duplicate_charge",
    "subscription_canceled",
)
REASON_P_FRAUD = (0.6, 0.4, 0.0, 0.0, 0.0, 0.0)
REASON_P_LEGIT = (0.1, 0.05, 0.3, 0.3, 0.1, 0.15)
# (probability, low, high) in seconds; each component is log-uniform.
TXN_LAG = ((0.90, 1, 120), (0.08, 121, 6 * HOUR), (0.02, DAY, 10 * DAY))
CBK_LAG = ((0.85, MINUTE, HOUR), (0.10, HOUR, DAY), (0.05, DAY, 10 * DAY))
REDELIVERY_LAG = ((1.0, MINUTE, 2 * DAY),)
P_INACTIVE_USER, P_INACTIVE_MERCHANT = 0.10, 0.05
P_NEW_DEVICE, NEW_DEVICE_RISK, NEW_SLOT_BASE = 0.03, 8.0, 1 << 32
P_NULL_DEVICE, P_NULL_AMOUNT, P_NULL_COUNTRY, P_NULL_REASON = 0.02, 0.01, 0.05, 0.10
P_FRAUD, P_CBK_FRAUD, P_CBK_LEGIT = 0.02, 0.80, 0.003
P_DUPLICATE, P_REDELIVERY, P_TIE, P_CBK_DUPLICATE, P_CBK_BATCH = 0.005, 0.005, 0.012, 0.02, 0.25


@dataclass(frozen=True)
class GenerationSummary:
    rows: dict[str, int]  # table name -> rows written, in TABLES order


@dataclass(frozen=True)
class _World:
    start: int  # epoch seconds
    days: int
    user_cdf: F64
    first_users: I64  # transaction i < len(first_users) belongs to first_users[i]
    user_devices: I64
    merchant_cdf: F64
    merchant_risk: F64  # already divided by the expected risk, so the mean fraud rate is P_FRAUD


def _rng(seed: int, table: str, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**64, zlib.crc32(table.encode()), chunk])


_CHARS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _strings(prefix: str, body: npt.NDArray[np.uint8], valid: Mask | None = None) -> Any:
    """A string array from fixed-width ASCII rows, built straight from Arrow buffers."""
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    n, width = body.shape[0], len(head) + body.shape[1]
    data = np.empty((n, width), dtype=np.uint8)
    data[:, : len(head)] = head
    data[:, len(head) :] = body
    offsets = np.arange(n + 1, dtype=np.int64) * width
    if offsets[-1] >= 2**31:
        raise ValueError("chunk too large for a 32-bit string array; lower rows_per_file")
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffers = [bitmap, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(_STR, n, buffers)


def _ids(prefix: str, index: I64, width: int) -> Any:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return _strings(prefix, _CHARS[index[:, None] // powers % 10])


def _mix(x: U64) -> U64:
    """splitmix64 finaliser (wrapping uint64 arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _device_hash(user: I64, slot: I64) -> U64:
    return _mix(_mix(user.astype(np.uint64)) ^ slot.astype(np.uint64))


def _device_ids(h: U64, valid: Mask | None = None) -> Any:
    octets = h.astype(">u8").view(np.uint8).reshape(len(h), 8)
    nibbles = np.stack([octets >> 4, octets & 15], axis=2).reshape(len(h), 16)
    return _strings("dev_", _CHARS[nibbles], valid)


def _devices_table(h: U64) -> pa.Table:
    top = (h >> np.uint64(56)).astype(np.int64)  # 0..255
    kind = (top >= 110).astype(np.int64) + (top >= 215)
    return pa.Table.from_arrays(
        [_device_ids(h), _pick(DEVICE_TYPES, kind)], schema=SCHEMAS["devices"]
    )


def _pick(choices: tuple[str, ...], codes: npt.NDArray[np.int64], valid: Mask | None = None) -> Any:
    indices = pa.array(codes, mask=None if valid is None else ~valid)
    return pa.array(choices, _STR).take(indices)


def _ts(seconds: I64) -> Any:
    return pa.array(seconds * 1_000_000, type=_TS)


def _decimal(cents: I64, valid: Mask) -> Any:
    """decimal128(18, 2) from non-negative cents: little-endian low word = cents, high word = 0."""
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [bitmap, pa.py_buffer(words)])


def _lag(rng: np.random.Generator, n: int, mixture: tuple[tuple[float, int, int], ...]) -> I64:
    """Seconds drawn from a mixture of log-uniform ranges."""
    prob, low, high = (np.array(column, dtype=np.float64) for column in zip(*mixture, strict=True))
    kind = rng.choice(len(prob), size=n, p=prob)
    lo, hi = np.log(low[kind]), np.log(high[kind] + 1)
    seconds: I64 = np.floor(np.exp(lo + rng.random(n) * (hi - lo))).astype(np.int64)
    return seconds


def _cdf(weights: F64) -> F64:
    if not weights.any():
        weights[0] = 1.0
    cdf: F64 = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def _draw(cdf: F64, u: F64) -> I64:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1).astype(np.int64)


def _shuffled(rng: np.random.Generator, n: int, copies: I64) -> tuple[I64, I64]:
    """Row indices of n originals followed by the duplicated `copies`, shuffled, and the
    permutation used (to shuffle values that differ between an original and its copy)."""
    rows = np.concatenate([np.arange(n, dtype=np.int64), copies])
    perm = rng.permutation(len(rows))
    return rows[perm], perm


class _Writer:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.parts = dict.fromkeys(TABLES, 0)
        self.rows = dict.fromkeys(TABLES, 0)
        for table in TABLES:
            folder = out_dir / table
            folder.mkdir(parents=True, exist_ok=True)
            for old in sorted(folder.glob("part-*.parquet")):
                old.unlink()

    def write(self, name: str, table: pa.Table, *, allow_empty: bool = False) -> None:
        if table.num_rows == 0 and not allow_empty:
            return
        path = self.out_dir / name / f"part-{self.parts[name]:05d}.parquet"
        pq.write_table(table, path, compression="zstd", compression_level=6)
        self.parts[name] += 1
        self.rows[name] += table.num_rows

    def finish(self) -> dict[str, int]:
        for name in TABLES:
            if self.parts[name] == 0:  # keep the schema readable even when a table is empty
                self.write(name, SCHEMAS[name].empty_table(), allow_empty=True)
        return dict(self.rows)


def _epoch_seconds(start: dt.datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return int(start.timestamp() // 1)


def _users(writer: _Writer, seed: int, users: int, start: int, chunk_rows: int) -> tuple[F64, I64]:
    weights, devices = np.empty(users), np.empty(users, dtype=np.int64)
    for chunk, lo in enumerate(range(0, users, chunk_rows)):
        rng = _rng(seed, "users", chunk)
        index = np.arange(lo, min(lo + chunk_rows, users), dtype=np.int64)
        n = len(index)
        signed_up = start - rng.integers(DAY, 3 * 365 * DAY, n)
        country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_P)
        has_country = rng.random(n) >= P_NULL_COUNTRY
        weights[index] = rng.lognormal(0.0, 1.3, n) * (rng.random(n) >= P_INACTIVE_USER)
        k = rng.choice(3, size=n, p=(0.5, 0.35, 0.15)) + 1
        devices[index] = k
        columns = [_ids("usr_", index, 8), _ts(signed_up), _pick(COUNTRIES, country, has_country)]
        writer.write("users", pa.Table.from_arrays(columns, schema=SCHEMAS["users"]))
        owner = np.repeat(index, k)
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k)
        writer.write("devices", _devices_table(_device_hash(owner, slot)))
    return weights, devices


def _merchants(
    writer: _Writer, seed: int, merchants: int, start: int, chunk_rows: int
) -> tuple[F64, F64]:
    weights, risk = np.empty(merchants), np.empty(merchants)
    category_risk = np.array(list(CATEGORY_RISK.values()))
    for chunk, lo in enumerate(range(0, merchants, chunk_rows)):
        rng = _rng(seed, "merchants", chunk)
        index = np.arange(lo, min(lo + chunk_rows, merchants), dtype=np.int64)
        n = len(index)
        category = rng.integers(0, len(CATEGORIES), n)
        onboarded = start - rng.integers(30 * DAY, 5 * 365 * DAY, n)
        weights[index] = rng.lognormal(0.0, 1.5, n) * (rng.random(n) >= P_INACTIVE_MERCHANT)
        risk[index] = category_risk[category] * rng.lognormal(0.0, 0.4, n)
        columns = [_ids("mer_", index, 6), _pick(CATEGORIES, category), _ts(onboarded)]
        writer.write("merchants", pa.Table.from_arrays(columns, schema=SCHEMAS["merchants"]))
    if merchants > 1 and weights.all():  # guarantee a merchant without history
        weights[np.argmin(weights)] = 0.0
    return weights, risk


def _transactions(
    writer: _Writer, world: _World, rng: np.random.Generator, lo: int, hi: int, next_cbk: int
) -> int:
    """One chunk of transactions [lo, hi) with its chargebacks, labels and new devices.
    Returns the next free chargeback number."""
    n = hi - lo
    txn = np.arange(lo, hi, dtype=np.int64)
    user = _draw(world.user_cdf, rng.random(n))
    first = txn < len(world.first_users)  # every active user gets a transaction
    user[first] = world.first_users[txn[first]]
    merchant = _draw(world.merchant_cdf, rng.random(n))
    at = world.start + rng.integers(0, world.days * DAY, n)
    # Ties: copy the event time of the previous transaction of the same user (never chained).
    order = np.argsort(user, kind="stable")
    tie = np.zeros(n, dtype=np.bool_)
    tie[1:] = (user[order][1:] == user[order][:-1]) & (rng.random(n - 1) < P_TIE)
    tie[1:] &= ~tie[:-1]
    at[order[tie]] = at[order[np.flatnonzero(tie) - 1]]

    has_device = rng.random(n) >= P_NULL_DEVICE
    new_device = (rng.random(n) < P_NEW_DEVICE) & has_device
    regular_slot = (rng.random(n) ** 2 * world.user_devices[user]).astype(np.int64)
    device = _device_hash(user, np.where(new_device, NEW_SLOT_BASE + txn, regular_slot))
    writer.write("devices", _devices_table(device[new_device]))

    risk = world.merchant_risk[merchant] * np.where(new_device, NEW_DEVICE_RISK, 1.0)
    fraud = rng.random(n) < np.minimum(P_FRAUD * risk, 0.5)
    amount = rng.lognormal(np.log(40.0), 1.1, n) * np.where(fraud, 2.5, 1.0)
    cents = np.round(np.clip(amount, 1.0, 5000.0) * 100).astype(np.int64)
    has_amount = rng.random(n) >= P_NULL_AMOUNT
    ingested = at + _lag(rng, n, TXN_LAG)

    u = rng.random(n)
    exact = np.flatnonzero(u < P_DUPLICATE)
    redelivered = np.flatnonzero((u >= P_DUPLICATE) & (u < P_DUPLICATE + P_REDELIVERY))
    redelivery_lag = np.zeros(n + len(exact) + len(redelivered), dtype=np.int64)
    redelivery_lag[n + len(exact) :] = _lag(rng, len(redelivered), REDELIVERY_LAG)
    rows, perm = _shuffled(rng, n, np.concatenate([exact, redelivered]))
    redelivery_lag = redelivery_lag[perm]
    columns = [
        _ids("txn_", txn[rows], 10),
        _ids("usr_", user[rows], 8),
        _ids("mer_", merchant[rows], 6),
        _device_ids(device[rows], has_device[rows]),
        _decimal(cents[rows], has_amount[rows]),
        _pick(("USD",), np.zeros(len(rows), dtype=np.int64)),
        _ts(at[rows]),
        _ts(ingested[rows] + redelivery_lag),
    ]
    writer.write("transactions", pa.Table.from_arrays(columns, schema=SCHEMAS["transactions"]))

    # Chargebacks: 3-60 days later; a batch share is posted at midnight (shared timestamps).
    hit = np.flatnonzero(rng.random(n) < np.where(fraud, P_CBK_FRAUD, P_CBK_LEGIT))
    m = len(hit)
    delay = rng.integers(3 * DAY, 60 * DAY + 1, m)
    batch = rng.random(m) < P_CBK_BATCH
    batch_at = at[hit] + np.maximum(delay, 4 * DAY)
    charged = np.where(batch, batch_at - batch_at % DAY, at[hit] + delay)
    keep = charged < world.start + (world.days + 60) * DAY  # a guard: delays are <= 60 days
    hit, charged = hit[keep], charged[keep]
    m = len(hit)
    reason = np.where(
        fraud[hit],
        rng.choice(len(REASONS), size=m, p=REASON_P_FRAUD),
        rng.choice(len(REASONS), size=m, p=REASON_P_LEGIT),
    )
    has_reason = rng.random(m) >= P_NULL_REASON
    cb_ingested = charged + _lag(rng, m, CBK_LAG)
    duplicate = rng.random(m) < P_CBK_DUPLICATE
    if m and not duplicate.any():
        duplicate[rng.integers(m)] = True
    rows, _ = _shuffled(rng, m, np.flatnonzero(duplicate))
    columns = [
        _ids("cbk_", next_cbk + rows, 10),
        _ids("txn_", txn[hit[rows]], 10),
        _ts(charged[rows]),
        _ts(cb_ingested[rows]),
        _pick(REASONS, reason[rows], has_reason[rows]),
    ]
    writer.write("chargebacks", pa.Table.from_arrays(columns, schema=SCHEMAS["chargebacks"]))

    # Labels: after the chargeback when there is one, else after review / the dispute window.
    has_cb = np.zeros(n, dtype=np.bool_)
    has_cb[hit] = True
    cb_time = at.copy()
    cb_time[hit] = charged
    kind = fraud.astype(np.int64) * 2 + has_cb
    low = np.array([60 * DAY, DAY, HOUR, HOUR])[kind]
    high = np.array([62 * DAY, 14 * DAY, 30 * DAY, 3 * DAY])[kind]
    labeled = cb_time + rng.integers(low, high)
    rows = rng.permutation(n)
    columns = [_ids("txn_", txn[rows], 10), pa.array(fraud[rows]), _ts(labeled[rows])]
    writer.write("fraud_labels", pa.Table.from_arrays(columns, schema=SCHEMAS["fraud_labels"]))
    return next_cbk + m


def generate(
    out_dir: Path,
    *,
    users: int,
    merchants: int,
    transactions: int,
    days: int,
    start: dt.datetime,
    seed: int,
    rows_per_file: int = 1_000_000,
) -> GenerationSummary:
    """Write the dataset under `out_dir` (replacing earlier part files) and count the rows."""
    if users < 1 or merchants < 1 or days < 1 or rows_per_file < 1 or transactions < 0:
        raise ValueError("need users, merchants, days, rows_per_file >= 1 and transactions >= 0")
    writer = _Writer(Path(out_dir))
    start_s = _epoch_seconds(start)
    user_weights, user_devices = _users(writer, seed, users, start_s, rows_per_file)
    merchant_weights, risk = _merchants(writer, seed, merchants, start_s, rows_per_file)
    merchant_cdf = _cdf(merchant_weights)
    expected_risk = np.diff(merchant_cdf, prepend=0.0) @ risk
    expected_risk *= 1 + (NEW_DEVICE_RISK - 1) * P_NEW_DEVICE * (1 - P_NULL_DEVICE)
    user_cdf = _cdf(user_weights)
    first_users = _rng(seed, "first_users", 0).permutation(np.flatnonzero(user_weights))
    world = _World(
        start_s, days, user_cdf, first_users, user_devices, merchant_cdf, risk / expected_risk
    )
    next_cbk = 0
    for chunk, lo in enumerate(range(0, transactions, rows_per_file)):
        rng = _rng(seed, "transactions", chunk)
        next_cbk = _transactions(
            writer, world, rng, lo, min(lo + rows_per_file, transactions), next_cbk
        )
    return GenerationSummary(rows=writer.finish())
