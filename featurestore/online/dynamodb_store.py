"""The DynamoDB online store (boto3), keeping the layout of :mod:`featurestore.online.layout`.

Table
    One table per project (default ``featurestore_online``), on-demand billing
    (``PAY_PER_REQUEST``), key schema ``pk`` (S, hash) = ``<entity>#<token>`` and ``sk``
    (S, range) = ``<view>``. Attributes: ``ts``, ``ver`` (N, microseconds), ``exp`` (N, epoch
    seconds; the table's TTL attribute, so DynamoDB deletes expired records itself, usually
    within a few days: readers also drop records with ``exp <= now``), ``f`` (M: feature
    -> value) and, when the record has a timeline, ``tl``: S (its UTF-8 text, as given)
    when the timeline is UTF-8 text (the layout's JSON forms), else B (its bytes: a packed
    tile set, never UTF-8); read back as its bytes either way, any other type an
    InvalidRecord. A PutItem replaces the whole item, so a record without a timeline drops
    a stored ``tl``. Loader bookkeeping lives in the same table under reserved partition keys:
    ``pk = "_meta#watermark"``, ``sk = <view>`` (attribute ``watermark``, N) and
    ``pk = "_meta#loads"``, ``sk = "<started_at>#<load_id>#<view>"`` (attribute ``record``:
    the :class:`~featurestore.online.store.LoadRecord` as JSON), listed newest first with a
    descending Query. These items carry no ``exp`` and never expire.

    :meth:`DynamoDBStore.initialize` (what ``featurestore init-store --online dynamodb://...``
    runs; :meth:`DynamoDBStore.ensure_table` is the same with a report of what it did) creates
    the table if it is missing, waits until it is ``ACTIVE`` and enables TTL on ``exp``. It is
    idempotent: an existing table is checked (key schema), TTL already enabled is left alone.

Values
    ``f`` holds the non-null values (nulls are omitted and read back as ``None``): booleans as
    ``BOOL``, strings as ``S``, integers as exact ``N``, timestamps as ``N`` microseconds since
    the epoch (UTC), floats as ``N`` through ``Decimal(repr(x))``: ``repr`` is the shortest
    decimal that reads back as the same double, so ``float(Decimal(repr(x))) == x`` always
    (checked on write). DynamoDB numbers have at most 38 significant digits, a magnitude of
    zero or in [1e-130, 1e126) and no negative zero: a finite value outside that (``1e-300``,
    ``5e-324``, ``1.7976931348623157e308``, ``-0.0``, an int of over 38 digits) is stored
    exactly as ``S`` holding the layout's text encoding (``repr`` / decimal digits) instead of
    being refused or rounded; NaN and infinities are refused with
    :class:`~featurestore.online.layout.OnlineLayoutError` before anything is sent. Readers
    decode with the registry type (``N`` -> int/float/timestamp, ``BOOL`` -> bool, ``S``
    through :func:`featurestore.online.layout.decode_value`); an item whose ``ts``, ``ver``
    or ``exp`` is not an integral ``N``, or holding a value of another attribute type or not
    valid for its type, is read as an :class:`~featurestore.online.store.InvalidRecord`
    (decoding is per record), and any later write replaces an item whose ``ts``/``ver`` is
    not a number.

Writes: one conditional PutItem per record, from a small thread pool
    Newer-wins is the condition ``attribute_not_exists(pk) OR ts < :ts OR (ts = :ts AND
    ver < :ver)`` on a PutItem that replaces the whole record item, so each record is written
    atomically or not at all. BatchWriteItem takes no conditions, which leaves PutItem or
    TransactWriteItems; PutItem was chosen because

    * a transaction is all-or-nothing across its (up to 25) records: one record whose stored
      value is newer cancels the other 24, which must be sent again (and a concurrent stream
      writer touching any one of them cancels it with ``TransactionConflict``), while a failed
      PutItem condition concerns that record only (``ConditionalCheckFailedException`` =
      skipped as older);
    * transactional writes cost two write units per item, PutItem one: half the bill of a
      nightly load on on-demand tables;
    * a transaction cannot hold two writes of one item, so batches would need deduplicating;
    * on moto (tests, benchmarks) TransactWriteItems deep-copies the whole table on every call
      (measured: ~10 records/s on a table of a few thousand items, and HTTP 500s under
      concurrency), so it cannot be benchmarked there.

    Replace mode (``write(..., replace=True)``, the loader's full refresh) sends the same
    PutItem without its condition, and a DeleteItem of ``(pk, view)`` for a record already
    expired.

    The cost is one HTTP request per record; ``max_workers`` threads (default 16) keep that
    many requests in flight. Records of one item within a batch are written in order by one
    thread (the same outcome and counts as applying them one after another). Request-size
    limits are enforced in code whatever the server accepts (moto is looser than DynamoDB): a
    botocore ``before-call`` guard on every client refuses a request carrying more than
    :data:`MAX_WRITE_ITEMS` write items (BatchWriteItem, TransactWriteItems) or more than
    :data:`MAX_READ_KEYS` keys (BatchGetItem); reads are chunked to at most 100 keys; every
    item's size is computed by DynamoDB's rules (:func:`item_size`, the timeline's ``tl``
    included) and a record over 400 KB, or whose timeline is not bytes, is refused
    (:class:`ItemTooLarge` / :class:`~featurestore.online.store.RecordRefused`, both
    StoreErrors) before anything of its batch is written, naming entity, key and view.

Retries
    Throttling (``ProvisionedThroughputExceededException``, ``ThrottlingException``,
    ``RequestLimitExceeded``) and 5xx/connection errors are retried by botocore's own retry
    handler (``adaptive`` mode for writes: exponential backoff with full jitter plus a
    client-side token bucket that slows the sender down while DynamoDB throttles; ``standard``
    mode for reads and table management, where a read must not be held back by a rate
    limiter). botocore classifies DynamoDB's error codes itself, and a generic library (such as
    tenacity, which is not a dependency here) would retry on top of it, multiplying attempts,
    with no client-side rate limiting. Two things botocore does not retry are handled here with
    the same exponential-backoff-with-full-jitter rule: ``TransactionConflictException`` on a
    PutItem (the item is in a concurrent transaction) and ``UnprocessedKeys`` of BatchGetItem
    (retried only within the read's deadline, ``read_deadline_s`` or the ``deadline_s`` of
    :meth:`DynamoDBStore.read`; keys still unprocessed then raise StoreUnavailable rather than
    being answered as missing). Timeouts: connect 2 s, read 5 s; attempts per request: 6 for
    writes (``write_max_attempts``: up to ~30 s of backoff, for a nightly job riding out a
    blip), 3 for reads and table management, 2 for :meth:`DynamoDBStore.check` (so an
    unreachable endpoint is reported within ~5 s). One caveat of any retried conditional
    write: if DynamoDB applied a PutItem whose response was lost, the retry finds the equal
    ``(ts, ver)`` and is counted as skipped, not written (the data is right, the count is off
    by one).

Reads
    BatchGetItem of the unique ``(pk, view)`` pairs in chunks of at most 100 (chunks fetched in
    parallel), projecting ``pk, sk, ts, ver, exp, f, tl``; eventually consistent unless
    ``consistent_reads=True``; records with ``exp <= now`` are answered as ``None``, and a
    key asked for twice is answered at each position.

Errors
    A missing table raises :class:`StoreNotInitialized` (naming the table and the init
    command); an unreachable endpoint, missing or refused credentials (``UnrecognizedClient``,
    ``InvalidSignature``, ``ExpiredToken``..., HTTP 403) and throttling that outlasts the
    retries raise :class:`StoreUnavailable`. Messages name the store, table and error code,
    never a credential.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Self, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from featurestore.online.layout import (
    OnlineLayoutError,
    Record,
    decode_value,
    dynamodb_pk,
    micros,
)
from featurestore.online.redaction import redact_url
from featurestore.online.store import (
    InvalidRecord,
    LoadRecord,
    OnlineStore,
    ReadGroup,
    RecordRefused,
    StoredRecord,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    Unreachable,
    ViewRead,
    WriteResult,
    checked_timeline,
    load_record_of,
    record_where,
    watermark_of,
)
from featurestore.registry import ValueType

__all__ = [
    "MAX_ITEM_BYTES",
    "MAX_READ_KEYS",
    "MAX_WRITE_ITEMS",
    "DynamoDBStore",
    "ItemTooLarge",
    "TableSetup",
    "attribute_value",
    "encode_record",
    "fits_dynamodb_number",
    "item_size",
]

log = logging.getLogger(__name__)

#: DynamoDB's real limits (moto accepts more): items per BatchWriteItem/TransactWriteItems
#: request, keys per BatchGetItem request, bytes per item (400 KB).
MAX_WRITE_ITEMS: Final = 25
MAX_READ_KEYS: Final = 100
MAX_ITEM_BYTES: Final = 400 * 1024
MAX_PK_BYTES: Final = 2048
MAX_SK_BYTES: Final = 1024
#: load-log entries are cut to this (a load record is figures and a short report)
MAX_LOAD_RECORD_BYTES: Final = 64 * 1024

WATERMARK_PK: Final = "_meta#watermark"
LOADS_PK: Final = "_meta#loads"

#: newer-wins: the brief's condition, verbatim (none of these names is a reserved word)
#: (a stored record whose ts or ver is not a number is corrupt, read as an InvalidRecord:
#: any write replaces it; the type checks come first: moto fails with HTTP 500 comparing an
#: S with an N, where DynamoDB finds the comparison false)
NEWER_WINS: Final = (
    "attribute_not_exists(pk) OR NOT attribute_type(ts, :number)"
    " OR NOT attribute_type(ver, :number) OR ts < :ts OR (ts = :ts AND ver < :ver)"
)
_PROJECTION: Final = "pk, sk, ts, ver, exp, f, tl"

_NOT_FOUND = frozenset({"ResourceNotFoundException"})
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "AccessDeniedException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "SignatureDoesNotMatch",
        "RequestExpired",
    }
)
_THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    }
)
_RETRIED_HERE = frozenset({"TransactionConflictException"})

# DynamoDB numbers: at most 38 significant digits, magnitude in [1e-130, 1e126)
_MAX_DIGITS = 38
_MIN_ADJUSTED = -130
_MAX_ADJUSTED = 125

T = TypeVar("T")


class ItemTooLarge(OnlineLayoutError, RecordRefused):
    """A record does not fit in one DynamoDB item (400 KB): a layout error of the record
    and a :class:`~featurestore.online.store.RecordRefused` of the store."""


@dataclass(frozen=True)
class TableSetup:
    """What :meth:`DynamoDBStore.ensure_table` did."""

    table: str
    created: bool
    ttl_enabled_now: bool


# --- encoding ----------------------------------------------------------------------------


def fits_dynamodb_number(number: Decimal) -> bool:
    """Whether DynamoDB's number type holds ``number`` exactly: finite, at most 38 significant
    digits, zero or a magnitude in [1e-130, 1e126), and not a negative zero."""
    sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN / infinity
        return False
    significant = "".join(map(str, digits)).strip("0")
    if not significant:
        return not sign  # DynamoDB has no -0
    return len(significant) <= _MAX_DIGITS and _MIN_ADJUSTED <= number.adjusted() <= _MAX_ADJUSTED


def _number_attribute(value: int | float) -> dict[str, Any]:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OnlineLayoutError(f"{value!r} cannot be stored online (not finite)")
        text = repr(value)  # the shortest decimal that reads back as the same double
        number = Decimal(text)
        if float(number) != value:  # pragma: no cover - repr round-trips by definition
            raise OnlineLayoutError(f"{value!r} does not round-trip through Decimal")
    else:
        text = str(value)
        number = Decimal(value)
    if fits_dynamodb_number(number):
        sign, digits, exponent = number.as_tuple()
        if len(digits) > _MAX_DIGITS:  # 10**40: send 1E+40, at most 38 digits on the wire
            kept = len(digits)
            while digits[kept - 1] == 0:
                kept -= 1
            assert isinstance(exponent, int)
            number = Decimal((sign, digits[:kept], exponent + len(digits) - kept))
        return {"N": str(number)}
    # beyond DynamoDB's numbers (1e-300, 1e308, -0.0, ints of over 38 digits): the layout's
    # exact text encoding as S, read back with the registry type like every other value
    return {"S": text}


def attribute_value(value: object) -> dict[str, Any] | None:
    """The DynamoDB attribute value of a feature value (``None`` for null, which is omitted).

    bool -> BOOL, int -> exact N, float -> N of ``Decimal(repr(x))``, str -> S,
    datetime -> N microseconds since the epoch (UTC). A finite number that DynamoDB's number
    type cannot hold exactly is stored as S in the layout's text encoding (``repr`` / decimal
    digits); NaN and infinities are refused."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return _number_attribute(value)
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dt.datetime):
        return {"N": str(micros(value))}
    raise OnlineLayoutError(f"cannot store a {type(value).__name__} value online: {value!r}")


def _value_size(value: dict[str, Any]) -> int:
    """Size of one attribute value by DynamoDB's rules (without the attribute's name)."""
    ((kind, body),) = value.items()
    if kind == "S":
        return len(body.encode())
    if kind == "N":
        significant = "".join(map(str, Decimal(body).as_tuple().digits)).strip("0")
        return math.ceil(max(len(significant), 1) / 2) + 1
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "B":
        return len(body)
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(item) + 1 for name, item in body.items())
    if kind == "L":
        return 3 + sum(_value_size(item) + 1 for item in body)
    if kind in {"SS", "BS"}:
        return sum(len(item.encode() if isinstance(item, str) else item) for item in body)
    if kind == "NS":
        return sum(_value_size({"N": item}) for item in body)
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    """Bytes an item counts against DynamoDB's 400 KB limit: per attribute the UTF-8 length of
    its name plus its value (strings: UTF-8 bytes; numbers: 1 byte per two significant digits
    + 1; booleans and nulls: 1; maps and lists: 3 + per element its name, its value and 1)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


@dataclass(frozen=True, slots=True)
class _Put:
    pk: str
    sk: str
    ts: int
    ver: int
    item: dict[str, dict[str, Any]]
    #: the write mode: "newer" (conditional PutItem), "replace" (PutItem without condition)
    #: or "remove" (DeleteItem: replace mode, the record has expired)
    mode: str = "newer"


def encode_record(record: Record) -> dict[str, dict[str, Any]]:
    """The DynamoDB item of a record (what PutItem sends), checked against DynamoDB's limits:
    raises OnlineLayoutError for a value it cannot hold, ItemTooLarge over 400 KB (the
    timeline counted in: its UTF-8 bytes as an S, its bytes as a B) and RecordRefused for a
    timeline that is not bytes."""
    pk = dynamodb_pk(record.entity, record.key)
    where = record_where(record)
    timeline = checked_timeline(record)
    if len(pk.encode()) > MAX_PK_BYTES:
        raise ItemTooLarge(f"{where}: partition key is over DynamoDB's {MAX_PK_BYTES} bytes")
    if not record.view or len(record.view.encode()) > MAX_SK_BYTES:
        raise OnlineLayoutError(f"{where}: the view name must be 1 to {MAX_SK_BYTES} bytes")
    features: dict[str, dict[str, Any]] = {}
    for name, value in record.values.items():
        try:
            encoded = attribute_value(value)
        except OnlineLayoutError as exc:
            raise OnlineLayoutError(f"{where}, feature {name!r}: {exc}") from None
        if encoded is not None:
            features[name] = encoded
    item: dict[str, dict[str, Any]] = {
        "pk": {"S": pk},
        "sk": {"S": record.view},
        "ts": {"N": str(int(record.ts))},
        "ver": {"N": str(int(record.ver))},
        "exp": {"N": str(int(record.exp))},
        "f": {"M": features},
    }
    if timeline is not None:
        item["tl"] = _timeline_attribute(timeline)
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLarge(
            f"{where}: the record is {size} bytes as a DynamoDB item, over the 400 KB "
            f"({MAX_ITEM_BYTES} bytes) item limit"
        )
    return item


def _timeline_attribute(timeline: bytes) -> dict[str, Any]:
    """The ``tl`` attribute of a timeline: a string (S) if it is UTF-8 text (the JSON forms:
    scheduled steps, a JSON tile set), else binary (B: a packed tile set, whose first byte
    is never UTF-8)."""
    try:
        return {"S": timeline.decode()}
    except UnicodeDecodeError:
        return {"B": timeline}


def _decode_item(
    spec: ViewRead, item: dict[str, Any], now_s: int
) -> StoredRecord | InvalidRecord | None:
    """One record item as read: None if it has expired (``exp`` <= ``now_s``), an
    :class:`InvalidRecord` if ``ts``/``ver``/``exp`` are not integral numbers (N), ``f`` is not
    a map (M) or a value is not valid for its feature's type (:func:`_decode`)."""
    view = spec.view
    try:
        exp = _integer(item, "exp")
        if exp <= now_s:
            return None
        ts, ver = _integer(item, "ts"), _integer(item, "ver")
        timeline = _timeline(item.get("tl"))
        stored = item.get("f", {"M": {}})
        if not isinstance(stored, dict) or not isinstance(stored.get("M"), dict):
            raise OnlineLayoutError(f"f is not a map (M): {stored!r:.60}")
        attributes = stored["M"]
        values = {}
        for feature, value_type in spec.features.items():
            value = attributes.get(feature)
            try:
                values[feature] = None if value is None else _decode(value, value_type)
            except ValueError as exc:
                raise OnlineLayoutError(f"{feature}: {exc}") from None
    except ValueError as exc:
        return InvalidRecord(f"view {view}: {exc}")
    return StoredRecord(ts=ts, ver=ver, exp=exp, values=values, timeline=timeline)


def _timeline(attribute: object) -> bytes | None:
    """The ``tl`` attribute as the timeline's bytes (None if absent): an S as its UTF-8
    bytes, a B as it is; an attribute of another type raises ValueError."""
    if attribute is None:
        return None
    if isinstance(attribute, dict):
        if isinstance(text := attribute.get("S"), str):
            return text.encode()
        if isinstance(data := attribute.get("B"), bytes):
            return data
    raise OnlineLayoutError(f"tl is not a string (S) or binary (B): {attribute!r:.60}")


def _fits_integer(text: str) -> bool:
    """Whether a DynamoDB number's text is an integer."""
    number = Decimal(text)
    return number.is_finite() and number == number.to_integral_value()


def _text(attribute: object) -> str:
    """The text of an ``S`` attribute (the attribute itself as text if it is not one)."""
    if isinstance(attribute, dict) and isinstance(attribute.get("S"), str):
        return str(attribute["S"])
    return repr(attribute)


def _integer(item: dict[str, Any], name: str) -> int:
    """The integral number (N) attribute ``name`` (ValueError if it is not one)."""
    attribute = item.get(name)
    text = attribute.get("N") if isinstance(attribute, dict) else None
    if not isinstance(text, str):
        raise OnlineLayoutError(f"{name} is not a number (N): {attribute!r:.60}")
    try:
        number = Decimal(text)  # DynamoDB numbers are finite decimals
    except InvalidOperation:  # not a number at all (a server that does not check N values)
        raise OnlineLayoutError(f"{name} = {text!r:.60} is not a number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise OnlineLayoutError(f"{name} = {text} is not an integer")
    return int(number)


def _decode(value: dict[str, Any], value_type: ValueType) -> object:
    """A stored attribute value as the registry type (``layout.decode_value`` semantics):
    ``BOOL`` for bool features, ``N`` for numbers and timestamps, ``S`` for strings and for
    the text of numbers DynamoDB cannot hold, ``NULL`` for null. Any other attribute type,
    or a value not valid for the type, raises ValueError."""
    if not isinstance(value, dict):
        raise OnlineLayoutError(f"not an attribute value: {value!r:.60}")
    if "NULL" in value:
        return None
    if "BOOL" in value and value_type == "bool":
        return bool(value["BOOL"])
    if "N" in value and value_type in {"int", "float", "timestamp"}:
        text = value["N"]
        if value_type == "float":
            return float(Decimal(text))
        number = Decimal(text)
        if number != number.to_integral_value():
            raise OnlineLayoutError(f"stored number {text} is not an integer ({value_type})")
        whole = int(number)
        return whole if value_type == "int" else decode_value(str(whole), value_type)
    if "S" in value and isinstance(value["S"], str):
        return decode_value(value["S"], value_type)
    raise OnlineLayoutError(f"a {value_type} cannot be stored as {value!r:.60}")


# --- helpers -------------------------------------------------------------------------------


def _now_seconds(now: dt.datetime | None) -> int:
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _backoff(attempt: int, base: float = 0.025, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    return random.uniform(0, min(cap, base * 2**attempt))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _request_limit_guard(operation: str) -> Callable[..., None]:
    """A ``before-call`` handler refusing requests over DynamoDB's real per-request limits."""

    def guard(params: dict[str, Any], **_: Any) -> None:
        body = params.get("body")
        if not body:
            return
        request = json.loads(body)
        if operation == "BatchGetItem":
            count = sum(len(spec.get("Keys", [])) for spec in request["RequestItems"].values())
            limit = MAX_READ_KEYS
        elif operation == "BatchWriteItem":
            count = sum(len(writes) for writes in request["RequestItems"].values())
            limit = MAX_WRITE_ITEMS
        else:
            count = len(request.get("TransactItems", []))
            limit = MAX_WRITE_ITEMS
        if count > limit:
            raise StoreError(
                f"refusing a {operation} request of {count} items: DynamoDB allows {limit}"
            )

    return guard


# --- the store -----------------------------------------------------------------------------


class DynamoDBStore(OnlineStore):
    """Feature records in one DynamoDB table (see the module docstring for the layout).

    ``max_workers`` conditional PutItems are kept in flight during writes (and read chunks
    fetched in parallel); ``read_deadline_s`` bounds the retries of unprocessed read keys;
    ``consistent_reads`` asks for strongly consistent reads (twice the read cost);
    ``write_max_attempts`` is botocore's attempt budget per write request (throttling,
    5xx and connection errors)."""

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        table: str = "featurestore_online",
        *,
        max_workers: int = 16,
        read_deadline_s: float = 0.5,
        consistent_reads: bool = False,
        write_max_attempts: int = 6,
        create_wait_s: float = 300.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.region = region
        self.endpoint_url = endpoint_url
        self.table = table
        self.max_workers = max_workers
        self.read_deadline_s = read_deadline_s
        self.consistent_reads = consistent_reads
        self.create_wait_s = create_wait_s
        endpoint = redact_url(endpoint_url) if endpoint_url else None
        self.description = f"dynamodb://{region}?table={table}" + (
            f"&endpoint_url={endpoint}" if endpoint else ""
        )
        session = boto3.session.Session(region_name=region)

        def client(mode: str, attempts: int) -> Any:
            config = Config(
                region_name=region,
                connect_timeout=2,
                read_timeout=5,
                retries={"mode": mode, "total_max_attempts": attempts},
                max_pool_connections=max_workers + 2,
                tcp_keepalive=True,
            )
            made = session.client("dynamodb", endpoint_url=endpoint_url, config=config)
            for operation in ("BatchGetItem", "BatchWriteItem", "TransactWriteItems"):
                made.meta.events.register(
                    f"before-call.dynamodb.{operation}", _request_limit_guard(operation)
                )
            return made

        # reads and table management: standard retries (no client-side rate limiter)
        self._client = client("standard", 3)
        # writes: adaptive retries (backoff + client-side rate limiting under throttling)
        self._writer = client("adaptive", write_max_attempts)
        # check(): at most two attempts, so an unreachable endpoint is reported within ~5 s
        self._probe = client("standard", 2)
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    @property
    def clients(self) -> tuple[Any, ...]:
        """The boto3 clients this store uses (for instrumentation: botocore event hooks)."""
        return (self._client, self._writer, self._probe)

    # --- errors ---

    def _error(self, exc: Exception, action: str) -> StoreError:
        where = f"{self.description}: {action}"
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            status = _http_status(exc)
            if code in _NOT_FOUND:
                return StoreNotInitialized(
                    f"{where}: table {self.table!r} does not exist in {self.region} "
                    f"(run `featurestore init-store --online <url>` to create it)"
                )
            if code in _CREDENTIAL_CODES or status == 403 or code == "403":
                return StoreUnavailable(
                    f"{where}: the AWS credentials were refused ({code or status}); check "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the profile or the role"
                )
            if code in _THROTTLING_CODES:
                return StoreUnavailable(f"{where}: still throttled after retries ({code})")
            if status >= 500:
                return StoreUnavailable(f"{where}: server error {status} ({code})")
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            return StoreError(f"{where}: {code or status}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return StoreUnavailable(
                f"{where}: no usable AWS credentials ({type(exc).__name__}); set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            target = (
                redact_url(self.endpoint_url) if self.endpoint_url else f"DynamoDB in {self.region}"
            )
            return StoreUnavailable(f"{where}: cannot reach {target} ({type(exc).__name__})")
        if isinstance(exc, BotoCoreError):
            return StoreUnavailable(f"{where}: {type(exc).__name__}: {exc}")
        return StoreError(f"{where}: {type(exc).__name__}: {exc}")

    def _call(self, client: Any, action: str, **params: Any) -> Any:
        try:
            return getattr(client, action)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action) from exc

    def _executor(self) -> cf.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="dynamodb-store"
                )
            return self._pool

    def _run_all(self, fn: Callable[[T], Any], tasks: Sequence[T]) -> list[Any]:
        """fn over tasks on the pool; on the first failure cancel what has not started and
        raise it once the running tasks are done."""
        if len(tasks) == 1:
            return [fn(tasks[0])]
        pool = self._executor()
        futures = [pool.submit(fn, task) for task in tasks]
        done, pending = cf.wait(futures, return_when=cf.FIRST_EXCEPTION)
        failed = [future for future in done if future.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            cf.wait(pending)
            error = failed[0].exception()
            assert error is not None
            raise error
        return [future.result() for future in futures]

    # --- table management ---

    def _describe(self, client: Any) -> dict[str, Any]:
        table: dict[str, Any] = self._call(client, "describe_table", TableName=self.table)["Table"]
        return table

    def _check_schema(self, table: dict[str, Any]) -> None:
        keys = {part["AttributeName"]: part["KeyType"] for part in table.get("KeySchema", [])}
        types = {
            part["AttributeName"]: part["AttributeType"]
            for part in table.get("AttributeDefinitions", [])
        }
        if keys != {"pk": "HASH", "sk": "RANGE"} or any(types.get(k) != "S" for k in keys):
            raise StoreError(
                f"{self.description}: table {self.table!r} exists but is not a featurestore "
                f"online table (key schema {keys}, expected pk (S, hash) and sk (S, range))"
            )

    def check(self) -> None:
        table = self._describe(self._probe)
        self._check_schema(table)
        status = table.get("TableStatus", "ACTIVE")
        if status not in {"ACTIVE", "UPDATING"}:
            raise StoreUnavailable(f"{self.description}: table {self.table!r} is {status}")

    def initialize(self) -> None:
        """Create the table if missing (on-demand), wait until ACTIVE, enable TTL on ``exp``."""
        self.ensure_table()

    def ensure_table(self) -> TableSetup:
        """:meth:`initialize`, reporting whether the table was created and TTL switched on.

        This is ``featurestore init-store --online dynamodb://...`` without the CLI."""
        created = False
        try:
            self._client.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":  # already exists (or creating)
                raise self._error(exc, "CreateTable") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "CreateTable") from exc
        self._wait_active()
        ttl_now = self._ensure_ttl()
        log.info(
            "dynamodb table ready",
            extra={"table": self.table, "created": created, "ttl_enabled_now": ttl_now},
        )
        return TableSetup(table=self.table, created=created, ttl_enabled_now=ttl_now)

    def _wait_active(self) -> None:
        deadline = time.monotonic() + self.create_wait_s
        delay = 0.05
        while True:
            table = self._describe(self._client)
            status = table.get("TableStatus", "ACTIVE")
            if status in {"ACTIVE", "UPDATING"}:
                self._check_schema(table)
                return
            if status not in {"CREATING"} or time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"{self.description}: table {self.table!r} is {status}, not ACTIVE"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _ensure_ttl(self) -> bool:
        described = self._call(self._client, "describe_time_to_live", TableName=self.table)
        ttl = described.get("TimeToLiveDescription", {})
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in {"ENABLED", "ENABLING"}:
            if attribute != "exp":
                raise StoreError(
                    f"{self.description}: table {self.table!r} has TTL on {attribute!r}; "
                    "the online layout expires records by `exp`"
                )
            return False
        try:
            self._client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"},
            )
        except ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", "")).lower()
            if _error_code(exc) == "ValidationException" and "already enabled" in message:
                return False
            raise self._error(exc, "UpdateTimeToLive") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "UpdateTimeToLive") from exc
        return True

    # --- records ---

    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        """:meth:`OnlineStore.write`: a conditional PutItem per record (newer wins); with
        ``replace`` a PutItem without condition, or a DeleteItem for a record already
        expired."""
        now_s = _now_seconds(now)
        groups: dict[tuple[str, str], list[_Put]] = {}
        for record in records:
            if record.exp <= now_s:
                checked_timeline(record, self.description)  # refused even if not written
                if replace:
                    pk = dynamodb_pk(record.entity, record.key)
                    put = _Put(pk, record.view, record.ts, record.ver, {}, "remove")
                    groups.setdefault((put.pk, put.sk), []).append(put)
                continue  # already expired: never written
            try:
                item = encode_record(record)  # checks every record before anything is sent
            except RecordRefused as exc:
                raise type(exc)(f"{self.description}: {exc}") from None
            mode = "replace" if replace else "newer"
            put = _Put(item["pk"]["S"], record.view, record.ts, record.ver, item, mode)
            groups.setdefault((put.pk, put.sk), []).append(put)
        if not groups:
            return WriteResult()
        outcomes = self._run_all(self._put_in_order, list(groups.values()))
        written = sum(outcomes)
        total = sum(put.mode != "remove" for group in groups.values() for put in group)
        return WriteResult(written=written, skipped_older=total - written)

    def _put_in_order(self, puts: list[_Put]) -> int:
        return sum(self._put(put) for put in puts)

    def _put(self, put: _Put) -> bool:
        """One PutItem, conditional unless in replace mode (or a DeleteItem of a removal):
        True if written, False if the stored record is as new (or it was a removal)."""
        action = "DeleteItem" if put.mode == "remove" else "PutItem"
        attempt = 0
        while True:
            try:
                if put.mode == "remove":
                    self._writer.delete_item(
                        TableName=self.table, Key={"pk": {"S": put.pk}, "sk": {"S": put.sk}}
                    )
                    return False
                if put.mode == "replace":
                    self._writer.put_item(TableName=self.table, Item=put.item)
                    return True
                self._writer.put_item(
                    TableName=self.table,
                    Item=put.item,
                    ConditionExpression=NEWER_WINS,
                    ExpressionAttributeValues={
                        ":ts": {"N": str(put.ts)},
                        ":ver": {"N": str(put.ver)},
                        ":number": {"S": "N"},
                    },
                )
                return True
            except ClientError as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return False
                if code in _RETRIED_HERE and attempt < 8:
                    log.debug("retrying %s after %s", action, code)
                    time.sleep(_backoff(attempt))
                    attempt += 1
                    continue
                raise self._error(exc, action) from exc
            except BotoCoreError as exc:
                raise self._error(exc, action) from exc

    def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]:
        """Records by BatchGetItem in chunks of at most 100 unique (pk, view) pairs; an item
        that cannot be decoded is an :class:`InvalidRecord` (:func:`_decode_item`).

        ``deadline_s`` (seconds from the call, on the monotonic clock; default
        ``read_deadline_s``) is the time budget within which unprocessed keys are retried;
        past it StoreUnavailable is raised (:meth:`OnlineStore.read`)."""
        return self.read_groups([ReadGroup(entity, keys, views)], now=now, deadline_s=deadline_s)[0]

    def read_groups(
        self,
        groups: Sequence[ReadGroup],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]]:
        """:meth:`OnlineStore.read_groups`: the (pk, view) pairs of every group in the same
        BatchGetItem chunks (one call for up to 100 pairs, whatever their entities), within
        one ``deadline_s`` (as for :meth:`read`)."""
        now_s = _now_seconds(now)
        budget = self.read_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + budget
        results: list[list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]] = [
            [{view.view: None for view in group.views} for _ in group.keys] for group in groups
        ]
        wanted = [{view.view: view for view in group.views} for group in groups]
        pks = [[dynamodb_pk(group.entity, key) for key in group.keys] for group in groups]
        pairs = list(
            dict.fromkeys(
                (pk, view)
                for group_pks, views in zip(pks, wanted, strict=True)
                for pk in group_pks
                for view in views
            )
        )
        if not pairs:
            return results
        chunks = [pairs[i : i + MAX_READ_KEYS] for i in range(0, len(pairs), MAX_READ_KEYS)]
        items: list[dict[str, Any]] = []
        for chunk_items in self._run_all(lambda c: self._get_chunk(c, deadline, budget), chunks):
            items.extend(chunk_items)
        specs = {name: spec for views in wanted for name, spec in views.items()}
        found: dict[tuple[str, str], StoredRecord | InvalidRecord] = {}
        for item in items:
            spec = specs.get(item["sk"]["S"])
            if spec is not None:
                record = _decode_item(spec, item, now_s)
                if record is not None:
                    found[(item["pk"]["S"], spec.view)] = record
        for rows, group_pks, views in zip(results, pks, wanted, strict=True):
            for index, pk in enumerate(group_pks):
                for view_name in views:
                    rows[index][view_name] = found.get((pk, view_name))
        return results

    def _get_chunk(
        self, pairs: list[tuple[str, str]], deadline: float, budget: float
    ) -> list[dict[str, Any]]:
        request_keys: list[dict[str, Any]] = [
            {"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in pairs
        ]
        items: list[dict[str, Any]] = []
        attempt = 0
        while True:
            if len(request_keys) > MAX_READ_KEYS:  # pragma: no cover - chunking ensures it
                raise StoreError(f"internal: {len(request_keys)} keys in one BatchGetItem")
            response = self._call(
                self._client,
                "batch_get_item",
                RequestItems={
                    self.table: {
                        "Keys": request_keys,
                        "ConsistentRead": self.consistent_reads,
                        "ProjectionExpression": _PROJECTION,
                    }
                },
            )
            items.extend(response.get("Responses", {}).get(self.table, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            if not unprocessed:
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(
                    f"{self.description}: BatchGetItem left {len(unprocessed)} keys unprocessed "
                    f"after retrying for the read deadline of {budget} s (throttled?)"
                )
            log.debug("retrying %d unprocessed keys", len(unprocessed))
            time.sleep(min(remaining, _backoff(attempt, base=0.01, cap=0.5)))
            attempt += 1
            request_keys = list(unprocessed)

    # --- loader bookkeeping ---

    def get_watermark(self, view: str) -> int | None:
        response = self._call(
            self._client,
            "get_item",
            TableName=self.table,
            Key={"pk": {"S": WATERMARK_PK}, "sk": {"S": view}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return None
        stored = item.get("watermark")
        number = stored.get("N") if isinstance(stored, dict) else stored
        if isinstance(number, str) and _fits_integer(number):
            return int(Decimal(number))
        return watermark_of(repr(stored), view, self.description)

    def set_watermark(self, view: str, watermark: int) -> None:
        self._call(
            self._client,
            "put_item",
            TableName=self.table,
            Item={
                "pk": {"S": WATERMARK_PK},
                "sk": {"S": view},
                "watermark": {"N": str(int(watermark))},
            },
        )

    def record_load(self, load: LoadRecord) -> None:
        """Put the load in the log; a record over 64 KB of JSON (a huge rejection report)
        keeps its figures with its message cut (and, if that is not enough, its extra)."""
        document = dataclasses.asdict(load)
        text = json.dumps(document)  # ASCII: len(text) is its size in bytes
        if len(text) > MAX_LOAD_RECORD_BYTES:
            marker = " [truncated]"
            keep = max(0, len(load.message) - (len(text) - MAX_LOAD_RECORD_BYTES) - len(marker))
            document["message"] = load.message[:keep] + marker
            text = json.dumps(document)
            if len(text) > MAX_LOAD_RECORD_BYTES:
                document["extra"] = {"truncated": True}
                text = json.dumps(document)
        self._call(
            self._client,
            "put_item",
            TableName=self.table,
            Item={
                "pk": {"S": LOADS_PK},
                "sk": {"S": f"{load.started_at}#{load.load_id}#{load.view}"},
                "record": {"S": text},
            },
        )

    def list_loads(self, limit: int = 50) -> list[LoadRecord]:
        if limit <= 0:
            return []
        loads: list[LoadRecord] = []
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": LOADS_PK}},
            "ScanIndexForward": False,  # newest first (sk starts with started_at)
            "ConsistentRead": True,
            "Limit": min(limit + 20, 1000),
        }
        while True:
            response = self._call(self._client, "query", **params)
            loads.extend(
                load_record_of(_text(item.get("record")), self.description)
                for item in response["Items"]
            )
            last = response.get("LastEvaluatedKey")
            # enough once the load at position `limit` has a strictly newer neighbour after it
            # (loads sharing a started_at are ordered by view below, as the other stores do)
            if last is None or (
                len(loads) > limit and loads[-1].started_at < loads[limit - 1].started_at
            ):
                break
            params["ExclusiveStartKey"] = last
        loads.sort(key=lambda load: load.view)
        loads.sort(key=lambda load: load.started_at, reverse=True)
        return loads[:limit]

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for client in self.clients:
            client.close()
