"""The online layout: how feature values are keyed and encoded in every online store.

This module owns the contract. The loader and the sidecar build keys and encode values
only through it. Layout version 2 (version 1 plus record timelines):

Record
    One *record* per (entity key, feature view): ALL of the view's feature values for that
    entity (a null value is ``None``, never left out: a record replaces the whole view),
    its feature timestamp ``ts`` (the value's ``feature_at``, what the API reports), its
    version ``ver`` (the as-of time: when the value became knowable, >= ``ts``) and its
    expiry ``exp`` (``ts + ttl``: the value is not served after it).

Ordering (newer wins)
    A write replaces a stored record only if ``(ts, ver)`` is greater, compared as a pair:
    a newer feature timestamp wins; at an equal feature timestamp a later version (a late
    event corrected the value) wins; an equal pair changes nothing, so writing the same batch
    twice is a no-op and a nightly batch never overwrites a fresher streamed value.

Timestamps
    Integers: microseconds since the Unix epoch, UTC (``ts``, ``ver``); ``exp`` in whole
    seconds since the epoch (what Redis PEXPIREAT/1000 and DynamoDB TTL use).

Entity keys
    An entity key is the tuple of the entity's key column values, in the entity's declared
    order. Its *token* is the parts joined by ``:``, each part percent-escaping ``%``, ``:``,
    ``{``, ``}`` and ``#`` (so ``usr_1`` stays ``usr_1``). A part is a non-empty string of
    at most :data:`MAX_KEY_PART_CHARS` (256) characters (code points, before escaping): the
    longest the sidecar accepts by default, so the loader's gate refuses longer ones.

Redis
    One hash per entity instance: ``<ns>:<entity>:{<first key part>}[:<other parts>]``, e.g.
    ``fs:user:{usr_00000001}`` and ``fs:user_device:{usr_00000001}:dev_3f9a``. The hash tag
    is the first key part, so every key of one user (its user hash and its user x device
    hashes) lands in one Redis Cluster slot and one request reads them in one round trip.
    Fields: ``<feature>`` -> encoded value (absent when the value is null), and per view
    ``_ts:<view>``, ``_ver:<view>``, ``_exp:<view>``. The key expires (PEXPIREAT) at the
    latest ``_exp`` of its views; readers also check each view's ``_exp``. Needs Redis >= 7.0.
    When a writer replays time (``now`` given, e.g. FEATURESTORE_NOW for demos), Redis' own
    clock would delete the keys at once, so the key's expiry is shifted by (real now - given
    now); the ``_exp`` fields always hold the true value. The namespace and entity names must
    not contain ``{`` or ``}`` (they would change the hash tag).

DynamoDB
    One table per project (default ``featurestore_online``), on-demand billing, key schema
    ``pk`` (S) = ``<entity>#<token>`` and ``sk`` (S) = ``<view>``; attributes ``ts``, ``ver``
    (N), ``exp`` (N, the table's TTL attribute) and ``f`` (M: feature -> value; numbers as
    exact decimals, booleans as BOOL, strings as S, nulls omitted). Numbers DynamoDB cannot
    hold (outside 1e-130..1e126, -0.0, over 38 digits) are stored as their text encoding (S)
    and read back exactly with the registry type. Keys starting with ``_meta#`` are reserved
    for the loader's bookkeeping (no entity may be named ``_meta``).

SQLite (embedded, WAL)
    Table ``online_records(entity, entity_key, view, ts, ver, exp, payload, timeline)`` keyed
    by (entity, entity_key, view); ``payload`` is the JSON object of non-null encoded values,
    ``timeline`` the record's timeline (a BLOB, NULL when it has none).

Timelines (layout version 2)
    A record may carry a *timeline*: one opaque byte string next to its values (Redis field
    ``_tl:<view>``, SQLite column ``timeline`` (BLOB), DynamoDB attribute ``tl``: S when it
    is UTF-8 text, B otherwise), written and removed atomically with the record and read
    back in the same round trip. Stores never look inside it; the loader encodes it and the
    sidecar decodes it with the functions below.

    * A *tiled* (declared, windowed) view's record holds no feature values: its timeline is
      the entity's tile set (:func:`encode_tile_set`), ``ts`` the latest ingestion time of the
      entity's events in it, ``ver`` the load's cutoff ``C`` (every event ingested up to ``C``
      is in it), ``exp`` the instant its last tile leaves its last window. A re-run of the same
      load is an equal ``(ts, ver)``: a no-op. A tile set holds, per hop (seconds), its tiles
      in start order and their partials as prefix sums, so that a reader merges any window
      with two lookups per column: a feature has one column (``count``: its counts; ``sum``:
      its sums) or two (``avg``: counts, sums), of *kind* 1 or 2; column ``c`` holds ``n + 1``
      integers (``n`` tiles), its ``i``-th the sum of the first ``i`` tiles' partials in units
      of ``10**-scale[c]`` (exact decimals as integers; the scale is the column's largest
      number of decimals, at most 38), so the tiles ``i..j-1`` hold ``(p[j] - p[i]) /
      10**scale`` (see :mod:`featurestore.windows`). Two forms, told apart by the first byte:

      - **packed** (what :func:`encode_tile_set` writes; first byte ``0xF5``, which never
        occurs in UTF-8 text): 8-byte words. Word 0: byte 0 ``0xF5``, byte 1 the format
        (1), bytes 2-3 the number of hops ``H`` (uint16 little-endian), bytes 4-7 the
        CRC-32 (``zlib.crc32``, uint32 little-endian) of every byte after word 0. Then
        signed 64-bit little-endian integers: word 1 the header's length ``W`` in words;
        the header, per hop in ascending order: hop seconds, tile count ``n``, feature count
        ``f``, column count ``m``, the ``f`` kinds (view order) and the ``m`` scales; then
        per hop in the same order its ``n`` tile numbers (tile start / hop: aligned by
        construction), strictly ascending, and its ``m`` columns of ``n + 1`` prefix sums
        from 0. A reader checks it (:func:`read_tile_set`) without a step per tile in
        Python: its length against its header, the CRC-32, the header's counts, kinds and
        scales (once per distinct header: sets of one view differ in their tile counts),
        the tile numbers' order and every column's leading 0 (C-level passes), and then
        reads the words in place (bisection on the tile numbers).
      - **JSON** (stores written before the packed form; and what the encoder writes when a
        prefix sum does not fit in 64 bits, e.g. a ``decimal(38, s)`` total; first byte
        ``{``): ``{"<hop>": {"t": [tile start s, ...ascending], "k": [kinds], "x":
        [scales], "p": [[0, ...] per column]}}``, checked element by element.
    * A *hand-written* view's record holds its value at ``ts``, the **last** row of the
      entity's history up to the load's cutoff plus the schedule horizon (the view's
      ``freshness_sla``); its timeline (absent when there is none) lists the earlier rows
      from the one valid at the cutoff: the *scheduled* values, ``[[ts_us, [encoded value
      or null, ...]], ...]`` ascending, values in the view's feature order
      (:func:`encode_steps`). At time ``T`` a reader serves the latest of (steps, record)
      whose ``ts`` <= ``T`` (the first step if ``T`` is earlier), each with its own expiry
      ``ts + ttl``. Newer-wins compares the record's (last) ``(ts, ver)``; when that last
      row is a scheduled one (``ts`` after the load's cutoff ``C``) its ``ver`` is ``C``
      (so ``ver < ts``): a later load that corrected it wins, a re-run is a no-op.

    A timeline is bytes (:attr:`Record.timeline`; anything else is refused on write), returned as
    stored (an undecodable one is the reader's InvalidRecord, not the store's). A record
    without one removes the stored one (newer-wins and replace alike), a skipped older one
    leaves it, a removal removes it. Each store refuses a record over its own limits before
    anything of the batch is written, naming entity, key and view: DynamoDB 400 KB per
    item with ``tl`` counted (an S its UTF-8 bytes, a B its bytes); Redis 512 MB per value;
    SQLite its ``SQLITE_LIMIT_LENGTH`` per row (1e9 bytes by default). Stores written with
    JSON tile sets need no migration: both forms are read, and the next load writes packed
    ones.

    Upgrading from layout version 1: Redis and DynamoDB need no migration (the field or
    attribute is simply absent from version 1 records, which read with no timeline). An
    SQLite store created by version 1 lacks the ``timeline`` column: ``featurestore
    init-store`` adds it in place (``alter table ... add column``, idempotent, records
    kept); until then its reads, writes and ``check`` raise StoreNotInitialized ("run
    `featurestore init-store`"), not an SQL error.

Values
    Encoded as text by :func:`encode_value`: int -> decimal digits, float -> ``repr`` (exact
    round trip; NaN and infinities are refused), bool -> ``1``/``0``, string as is, timestamp
    -> microseconds since the epoch. :func:`decode_value` reads them back as the registry
    type. (DynamoDB stores numbers as numbers, see :mod:`featurestore.online.dynamodb_store`.)
    A stored record whose ``ts``/``ver``/``exp`` is not an integer, or holding a text that is
    not a valid encoding of its type (:func:`decode_value` raises ValueError), is read as an
    :class:`~featurestore.online.store.InvalidRecord`: decoding is per record.
"""

from __future__ import annotations

import array
import datetime as dt
import itertools
import json
import math
import operator
import struct
import sys
import zlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple

import orjson

from featurestore.registry import ValueType
from featurestore.timestamps import from_micros, micros

__all__ = [
    "LAYOUT_VERSION",
    "MAX_KEY_PART_CHARS",
    "MAX_TILE_SCALE",
    "TILE_SET_FORMAT",
    "TILE_SET_MAGIC",
    "OnlineLayoutError",
    "Record",
    "TileColumns",
    "TileHop",
    "TileSet",
    "TileWords",
    "decode_steps",
    "decode_tile_set",
    "decode_value",
    "dynamodb_pk",
    "encode_python_value",
    "encode_steps",
    "encode_tile_set",
    "encode_value",
    "entity_token",
    "exp_field",
    "json_encoder",
    "micros",
    "parse_entity_token",
    "read_tile_columns",
    "read_tile_set",
    "redis_key",
    "redis_keys",
    "tile_words",
    "timeline_field",
    "ts_field",
    "ver_field",
]

LAYOUT_VERSION: Final = 2
DEFAULT_NAMESPACE: Final = "fs"
#: characters (code points, before escaping) of one entity key part at most: what the
#: sidecar accepts by default (``max_key_part_chars``) and the loader's gate lets through
MAX_KEY_PART_CHARS: Final = 256
_ESCAPES = {"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D", "#": "%23"}
_SPECIAL = frozenset(_ESCAPES)


class OnlineLayoutError(ValueError):
    """A value or key cannot be represented in the online layout."""


@dataclass(frozen=True, slots=True)
class Record:
    """One feature view's values for one entity key (null values are ``None``)."""

    entity: str
    key: tuple[str, ...]
    view: str
    ts: int
    ver: int
    exp: int
    values: dict[str, object]
    #: the encoded timeline (tile set or scheduled steps, see the module docstring), or None
    timeline: bytes | None = None

    def newer_than(self, ts: int, ver: int) -> bool:
        return (self.ts, self.ver) > (ts, ver)


def _escape(part: str) -> str:
    if _SPECIAL.isdisjoint(part):
        return part
    return "".join(_ESCAPES.get(ch, ch) for ch in part)


def _unescape(part: str) -> str:
    if "%" not in part:
        return part
    for raw, escaped in _ESCAPES.items():
        if raw != "%":
            part = part.replace(escaped, raw)
    return part.replace("%25", "%")


def entity_token(key: Sequence[str]) -> str:
    """The entity key parts joined by ``:`` with separators escaped."""
    if not key:
        raise OnlineLayoutError("an entity key needs at least one part")
    for part in key:
        if not isinstance(part, str) or part == "":
            raise OnlineLayoutError(f"entity key parts must be non-empty strings, got {part!r}")
    return ":".join(_escape(part) for part in key)


def parse_entity_token(token: str) -> tuple[str, ...]:
    return tuple(_unescape(part) for part in token.split(":"))


def redis_key(entity: str, key: Sequence[str], namespace: str = DEFAULT_NAMESPACE) -> str:
    """``<ns>:<entity>:{<first part>}[:<other parts>]`` (hash tag = first key part)."""
    if "{" in namespace or "}" in namespace or "{" in entity or "}" in entity:
        raise OnlineLayoutError(
            f"namespace/entity must not contain braces: {namespace!r} {entity!r}"
        )
    token = entity_token(key)
    first, _, rest = token.partition(":")
    return f"{namespace}:{entity}:{{{first}}}" + (f":{rest}" if rest else "")


def redis_keys(
    entity: str, keys: Sequence[Sequence[str]], namespace: str = DEFAULT_NAMESPACE
) -> list[str]:
    """:func:`redis_key` of many keys (a one-part key without special characters skips the
    token machinery; the result is the same)."""
    if not keys:
        return []
    redis_key(entity, ("x",), namespace)  # checks the names once
    prefix = f"{namespace}:{entity}:"
    special = _SPECIAL
    out = []
    for key in keys:
        if len(key) == 1 and type(part := key[0]) is str and part and special.isdisjoint(part):
            out.append(f"{prefix}{{{part}}}")
        else:
            out.append(redis_key(entity, key, namespace))
    return out


def dynamodb_pk(entity: str, key: Sequence[str]) -> str:
    return f"{entity}#{entity_token(key)}"


def ts_field(view: str) -> str:
    return f"_ts:{view}"


def ver_field(view: str) -> str:
    return f"_ver:{view}"


def exp_field(view: str) -> str:
    return f"_exp:{view}"


def timeline_field(view: str) -> str:
    return f"_tl:{view}"


#: a tile set: hop seconds -> tile start seconds -> the partials of the hop's features
TileSet = dict[int, dict[int, tuple[object, ...]]]

#: the first byte of a packed tile set: a byte that never occurs in UTF-8 text (so never
#: the ``{`` of a JSON tile set: the reader dispatches on it, and DynamoDB stores a packed
#: set as binary), then the format's version
TILE_SET_MAGIC: Final = 0xF5
TILE_SET_FORMAT: Final = 1
#: the first word of a packed tile set: magic, format, number of hops, CRC-32 of the rest
_PREAMBLE: Final = struct.Struct("<BBHI")
_MAGIC_BYTE: Final = bytes([TILE_SET_MAGIC])
#: whether a packed set's little-endian words are this machine's own (memoryview.cast)
_LITTLE_ENDIAN: Final = sys.byteorder == "little"
#: the largest decimal scale of a tile column (decimal(38, s) has s <= 38)
MAX_TILE_SCALE: Final = 38


def _scaled(value: object, scale: int) -> int:
    """A partial's sum as an integer count of ``10**-scale`` units (exact)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise OnlineLayoutError(f"not a tile partial sum: {value!r}"[:80])
    if isinstance(value, int):
        return int(value * 10**scale)
    if not value.is_finite():
        raise OnlineLayoutError(f"a tile partial must be finite, got {value!r}")
    scaled = value.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise OnlineLayoutError(f"{value!r} has more than {scale} decimals")
    return int(scaled)


def _scale_of(values: Sequence[object]) -> int:
    scale = 0
    for value in values:
        if isinstance(value, Decimal) and value.is_finite():
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > scale:
                scale = -exponent
    if scale > MAX_TILE_SCALE:
        raise OnlineLayoutError(f"a tile partial has {scale} decimals, over {MAX_TILE_SCALE}")
    return scale


def _prefix(values: Sequence[int]) -> list[int]:
    out = [0]
    total = 0
    for value in values:
        total += value
        out.append(total)
    return out


@dataclass(frozen=True, slots=True)
class TileColumns:
    """One hop of a tile set as stored: ``starts`` (seconds, ascending), per feature of the
    hop its number of columns (``kinds``: 1, or 2 for a (count, sum) pair), per column its
    decimal scale and its prefix sums (``prefixes[c][i]``: the sum of the first ``i`` tiles'
    partials in units of ``10**-scales[c]``; ``len(starts) + 1`` entries)."""

    starts: list[int]
    kinds: list[int]
    scales: list[int]
    prefixes: list[list[int]]


def _tile_hops(tiles: TileSet) -> list[tuple[int, TileColumns]]:
    """The hops of a tile set (ascending) as columns of prefix sums, checked: a positive
    hop, tile starts aligned to it, the same number of partials on every tile of a hop,
    each position all numbers or all (count, sum) pairs."""
    out: list[tuple[int, TileColumns]] = []
    for hop, by_start in sorted(tiles.items()):
        if type(hop) is not int or hop <= 0:
            raise OnlineLayoutError(f"a tile hop must be a positive integer, got {hop!r}")
        starts = sorted(by_start)
        if any(type(start) is not int or start % hop for start in starts):
            raise OnlineLayoutError(f"hop {hop}: tile starts must be multiples of the hop")
        rows = [by_start[start] for start in starts]
        width = {len(row) for row in rows}
        if len(width) > 1:
            raise OnlineLayoutError(f"tiles of hop {hop} have different numbers of partials")
        kinds: list[int] = []
        columns: list[list[int]] = []
        scales: list[int] = []
        for position in range(width.pop() if width else 0):
            partials = [row[position] for row in rows]
            pairs = [p for p in partials if isinstance(p, tuple | list)]
            if pairs and len(pairs) != len([p for p in partials if p is not None]):
                raise OnlineLayoutError(f"hop {hop} partial {position}: pairs mixed with numbers")
            if pairs:
                kinds.append(2)
                counts = [p[0] if isinstance(p, tuple | list) else 0 for p in partials]
                sums = [p[1] if isinstance(p, tuple | list) else None for p in partials]
                scale = _scale_of(sums)
                columns += [
                    _prefix([_scaled(c, 0) for c in counts]),
                    _prefix([_scaled(v, scale) for v in sums]),
                ]
                scales += [0, scale]
            else:
                kinds.append(1)
                scale = _scale_of(partials)
                columns.append(_prefix([_scaled(p, scale) for p in partials]))
                scales.append(scale)
        out.append((hop, TileColumns(starts, kinds, scales, columns)))
    return out


def encode_tile_set(tiles: TileSet, *, packed: bool = True) -> bytes:
    """The timeline bytes of a tiled view's record (see the module docstring, "Timelines"):
    per hop its tiles in start order and, per column, the prefix sums of the partials over
    the tiles; packed (int64 words), or JSON if a prefix sum does not fit in 64 bits (or
    ``packed`` is false: the form of stores written before the packed one).

    ``tiles`` holds per hop and tile start (seconds, a multiple of the hop) the partials of
    the hop's features in view order (:data:`featurestore.windows.Partial`; ``None`` counts
    as zero). Raises :class:`OnlineLayoutError` for tiles the layout cannot hold."""
    hops = _tile_hops(tiles)
    if not packed:
        return _json_tile_set(hops)
    if len(hops) > 0xFFFF:
        raise OnlineLayoutError(f"a tile set holds at most 65535 hops, got {len(hops)}")
    header: list[int] = []
    tiles_words: list[int] = []
    for hop, columns in hops:
        header += (hop, len(columns.starts), len(columns.kinds), len(columns.prefixes))
        header += columns.kinds
        header += columns.scales
        tiles_words += [start // hop for start in columns.starts]
        for prefix in columns.prefixes:
            tiles_words += prefix
    try:
        words = array.array("q", [len(header), *header, *tiles_words])
    except OverflowError:  # a prefix sum beyond 64 bits (a decimal(38, s) total): JSON
        return _json_tile_set(hops)
    if not _LITTLE_ENDIAN:  # pragma: no cover - the layout's words are little-endian
        words.byteswap()
    body = words.tobytes()
    return _PREAMBLE.pack(TILE_SET_MAGIC, TILE_SET_FORMAT, len(hops), zlib.crc32(body)) + body


def _json_tile_set(hops: list[tuple[int, TileColumns]]) -> bytes:
    """The JSON form of a tile set (integers of any size; ``json``, as orjson stops at 64
    bits)."""
    out = {
        str(hop): {"t": c.starts, "k": c.kinds, "x": c.scales, "p": c.prefixes} for hop, c in hops
    }
    return json.dumps(out, separators=(",", ":")).encode()


class TileHop(NamedTuple):
    """One hop of a read tile set (:class:`TileWords`): its kinds and scales, its number of
    tiles ``n`` and where its words are: ``numbers`` the index of the first of its ``n``
    tile numbers (tile start / hop, strictly ascending), ``columns`` the index of its first
    column; column ``c`` is the ``n + 1`` prefix sums from ``columns + c * (n + 1)``."""

    kinds: tuple[int, ...]
    scales: tuple[int, ...]
    tiles: int
    numbers: int
    columns: int


class TileWords(NamedTuple):
    """A stored tile set, checked (:func:`read_tile_set`): its integer words (the packed
    set's own bytes, read by :func:`tile_words` without a copy, or a tuple for the JSON
    form), per hop seconds where its tiles are among them, and ``header``: a value equal
    for two sets exactly when their ``hops`` are equal (their header words), so that a
    reader can keep what it derives from ``hops`` per header."""

    words: bytes | tuple[int, ...]
    hops: dict[int, TileHop]
    header: Hashable


def tile_words(words: bytes | tuple[int, ...]) -> Sequence[int]:
    """The integers of :attr:`TileWords.words`: a packed set's bytes as int64 words (a
    memoryview, no copy; ``bisect`` works on it), a tuple as it is."""
    return memoryview(words).cast("q") if type(words) is bytes else words


def read_tile_set(data: bytes) -> TileWords:
    """A stored tile set, checked, in either form (the first byte tells: 0xF5 packed, else
    JSON). Raises :class:`OnlineLayoutError` (a ValueError) if it is not a valid tile set.

    A packed set is checked without a Python step per tile: its header (hops ascending and
    positive, counts >= 0, kinds 1 or 2 adding up to the columns, scales 0 to 38: parsed
    once per distinct header and remembered), its length against its header, its CRC-32,
    per hop its tile numbers strictly ascending and its columns starting at 0 (C-level
    ``map``/slices). A JSON set as :func:`read_tile_columns` checks it (per element)."""
    if data[:1] == _MAGIC_BYTE:
        return _read_packed(data)
    hops = sorted(_read_json_columns(data).items())
    words: list[int] = [0, 0]  # the packed form's first two words, so that indexes agree
    body: list[int] = []
    found: dict[int, TileHop] = {}
    for hop, c in hops:
        words += (hop, len(c.starts), len(c.kinds), len(c.prefixes), *c.kinds, *c.scales)
    for hop, c in hops:
        n = len(c.starts)
        numbers = len(words) + len(body)
        body += [start // hop for start in c.starts]
        for prefix in c.prefixes:
            body += prefix
        found[hop] = TileHop(tuple(c.kinds), tuple(c.scales), n, numbers, numbers + n)
    return TileWords(tuple(words + body), found, tuple(found.items()))


class _Header(NamedTuple):
    """A packed set's header as parsed: what every set with these header words shares."""

    #: the header words' bytes (word 1 on), the key it is remembered by
    key: bytes
    #: the number of hops the preamble must give
    hop_count: int
    #: the set's length in words
    total: int
    hops: dict[int, TileHop]
    #: per hop: (index of its first tile number, of its first column, after its last
    #: column, the columns' length): what is checked per set
    bodies: tuple[tuple[int, int, int, int], ...]


#: packed headers parsed (key: :attr:`_Header.key`), at most _HEADERS_MAX (cleared when
#: full): sets of one view differ in their tile counts only, so a few hundred at most
_HEADERS: dict[bytes, _Header] = {}
_HEADERS_MAX: Final = 4096


def _read_packed(data: bytes) -> TileWords:
    size = len(data)
    if size < 16 or size % 8:
        raise OnlineLayoutError(f"packed tile set of {size} bytes: not whole 8-byte words")
    _, version, count, crc = _PREAMBLE.unpack_from(data)
    if version != TILE_SET_FORMAT:
        raise OnlineLayoutError(f"packed tile set of format {version}, not {TILE_SET_FORMAT}")
    words: Sequence[int]
    stored: bytes | tuple[int, ...]
    if _LITTLE_ENDIAN:
        stored = data
        words = memoryview(data).cast("q")
    else:  # pragma: no cover - big-endian machines read a copy
        swapped = array.array("q", data)
        swapped.byteswap()
        stored = words = tuple(swapped)
    width = words[1]
    if width < 0 or 16 + 8 * width > size:
        raise OnlineLayoutError(f"packed tile set: a header of {width} words (truncated)")
    key = data[8 : 16 + 8 * width]
    header = _HEADERS.get(key)
    if header is None:
        header = _parse_header(key, words, width)
        if len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.clear()
        _HEADERS[key] = header
    if header.hop_count != count or header.total != size // 8:
        raise OnlineLayoutError(
            f"packed tile set: {size // 8} words and {count} hops stored, its header "
            f"describes {header.total} words and {header.hop_count} hops"
        )
    if zlib.crc32(memoryview(data)[8:]) != crc:
        raise OnlineLayoutError("packed tile set: CRC-32 mismatch (corrupt)")
    lt = operator.lt
    for numbers, columns, end, step in header.bodies:
        if columns - numbers > 1 and not all(
            map(lt, words[numbers : columns - 1], words[numbers + 1 : columns])
        ):
            raise OnlineLayoutError("packed tile set: tile numbers must ascend")
        if any(words[columns:end:step]):
            raise OnlineLayoutError("packed tile set: a prefix column not starting at 0")
    return TileWords(stored, header.hops, header.key)


def _parse_header(key: bytes, words: Sequence[int], width: int) -> _Header:
    """The header words ``words[2 : 2 + width]`` checked and laid out over the body."""
    hops: dict[int, TileHop] = {}
    bodies: list[tuple[int, int, int, int]] = []
    position, stop, previous = 2, 2 + width, 0
    body = stop
    while position < stop:
        if position + 4 > stop:
            raise OnlineLayoutError("packed tile set: a hop's header is cut short")
        hop, n, nkinds, ncolumns = words[position : position + 4]
        if hop <= previous or n < 0 or nkinds < 0 or ncolumns < 0:
            raise OnlineLayoutError(
                f"packed tile set hop {hop}: hops must ascend from 1, counts be >= 0"
            )
        kinds_at = position + 4
        position = kinds_at + nkinds + ncolumns
        if position > stop:
            raise OnlineLayoutError(f"packed tile set hop {hop}: its header is cut short")
        kinds = tuple(words[kinds_at : kinds_at + nkinds])
        scales = tuple(words[kinds_at + nkinds : position])
        if not _KINDS.issuperset(kinds) or sum(kinds) != ncolumns:
            raise OnlineLayoutError(
                f"packed tile set hop {hop}: kinds must be 1 or 2 and add up to the columns"
            )
        if scales and (min(scales) < 0 or max(scales) > MAX_TILE_SCALE):
            raise OnlineLayoutError(f"packed tile set hop {hop}: scales must be 0 to 38")
        columns = body + n
        end = columns + ncolumns * (n + 1)
        hops[hop] = TileHop(kinds, scales, n, body, columns)
        bodies.append((body, columns, end, n + 1))
        body, previous = end, hop
    return _Header(key, len(hops), body, hops, tuple(bodies))


def read_tile_columns(data: bytes | str) -> dict[int, TileColumns]:
    """A stored tile set (either form), checked (:func:`read_tile_set`): hop ->
    :class:`TileColumns` (lists: the slow path, for tests and tools)."""
    read = read_tile_set(data.encode() if isinstance(data, str) else data)
    words = tile_words(read.words)
    out: dict[int, TileColumns] = {}
    for hop, found in read.hops.items():
        n1 = found.tiles + 1
        out[hop] = TileColumns(
            [k * hop for k in words[found.numbers : found.columns]],
            list(found.kinds),
            list(found.scales),
            [
                list(words[found.columns + c * n1 : found.columns + (c + 1) * n1])
                for c in range(len(found.scales))
            ],
        )
    return out


def _read_json_columns(data: bytes | str) -> dict[int, TileColumns]:
    """The JSON form of a tile set, checked element by element."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise OnlineLayoutError(f"tile set is not JSON: {exc}") from None
    try:
        return _tile_columns(parsed)
    except OnlineLayoutError:
        # orjson reads an integer beyond 64 bits as a float: read such a set exactly (rare:
        # only decimal totals that large), and check it again (a bad set fails the same way)
        return _tile_columns(json.loads(data, parse_constant=_no_constant))


_INT_TYPE: Final = frozenset({int})


def _int_list(value: object) -> bool:
    """A list of integers (not booleans); C-level loops only."""
    return type(value) is list and _INT_TYPE.issuperset(map(type, value))


def _no_constant(name: str) -> object:
    raise OnlineLayoutError(f"tile set is not JSON: {name}")


_KINDS: Final = frozenset({1, 2})


def _prefix_column(column: object, width: int) -> bool:
    return (
        type(column) is list
        and len(column) == width
        and column[0] == 0
        and _INT_TYPE.issuperset(map(type, column))
    )


def _tile_columns(parsed: object) -> dict[int, TileColumns]:
    if not isinstance(parsed, dict):
        raise OnlineLayoutError("tile set is not a JSON object")
    out: dict[int, TileColumns] = {}
    for hop_text, spec in parsed.items():
        if not hop_text.isdigit() or int(hop_text) <= 0:
            raise OnlineLayoutError(f"tile set hop {hop_text[:20]!r} is not a positive integer")
        hop = int(hop_text)
        if not isinstance(spec, dict) or set(spec) != {"t", "k", "x", "p"}:
            raise OnlineLayoutError(f"tile set hop {hop}: not an object of t, k, x, p")
        starts, kinds, scales, prefixes = spec["t"], spec["k"], spec["x"], spec["p"]
        if not (_int_list(starts) and _int_list(kinds) and _int_list(scales)):
            raise OnlineLayoutError(f"tile set hop {hop}: t, k and x must be lists of integers")
        if any(map(hop.__rmod__, starts)) or not all(map(operator.lt, starts, starts[1:])):
            raise OnlineLayoutError(
                f"tile set hop {hop}: tile starts must ascend and be multiples of the hop"
            )
        if not _KINDS.issuperset(kinds) or (
            scales and (min(scales) < 0 or max(scales) > MAX_TILE_SCALE)
        ):
            raise OnlineLayoutError(f"tile set hop {hop}: kinds must be 1 or 2, scales >= 0")
        width = len(starts) + 1
        if (
            type(prefixes) is not list
            or len(prefixes) != sum(kinds)
            or len(scales) != len(prefixes)
            or not all(map(_prefix_column, prefixes, itertools.repeat(width)))
        ):
            raise OnlineLayoutError(
                f"tile set hop {hop}: p must hold one prefix-sum list per column, "
                f"{len(starts) + 1} integers from 0"
            )
        out[hop] = TileColumns(starts, kinds, scales, prefixes)
    return out


def _unscaled(units: int, scale: int) -> int | Decimal:
    return units if scale == 0 else Decimal(units).scaleb(-scale)


def decode_tile_set(data: bytes | str) -> TileSet:
    """:func:`encode_tile_set` read back as partials per tile (sums with a scale as Decimal,
    pairs as tuples). Raises ValueError if the text is not a tile set."""
    out: TileSet = {}
    for hop, columns in read_tile_columns(data).items():
        tiles = out[hop] = {}
        for i, start in enumerate(columns.starts):
            partials: list[object] = []
            column = 0
            for kind in columns.kinds:
                values = [
                    _unscaled(
                        columns.prefixes[c][i + 1] - columns.prefixes[c][i], columns.scales[c]
                    )
                    for c in range(column, column + kind)
                ]
                partials.append(values[0] if kind == 1 else (values[0], values[1]))
                column += kind
            tiles[start] = tuple(partials)
    return out


def encode_steps(steps: Sequence[tuple[int, Sequence[str | None]]]) -> bytes:
    """The timeline text of a hand-written view's record: its scheduled earlier values,
    ``(ts_us, encoded values in the view's feature order)`` ascending by ``ts``."""
    return orjson.dumps([[ts, list(values)] for ts, values in steps])


def decode_steps(data: bytes | str) -> list[tuple[int, list[str | None]]]:
    """:func:`encode_steps` read back. Raises ValueError if it is not a list of steps."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise OnlineLayoutError(f"steps are not JSON: {exc}") from None
    if not isinstance(parsed, list):
        raise OnlineLayoutError("steps are not a JSON list")
    out: list[tuple[int, list[str | None]]] = []
    for step in parsed:
        if (
            not isinstance(step, list)
            or len(step) != 2
            or type(step[0]) is not int
            or not isinstance(step[1], list)
            or not all(v is None or isinstance(v, str) for v in step[1])
        ):
            raise OnlineLayoutError(f"not a step [ts, [values]]: {step!r}"[:80])
        out.append((step[0], step[1]))
    return out


def encode_value(value: object, value_type: ValueType) -> str | None:
    """Text encoding of a feature value (``None`` for null)."""
    if value is None:
        return None
    if value_type == "bool":
        if not isinstance(value, bool):
            raise OnlineLayoutError(f"expected a boolean, got {value!r}")
        return "1" if value else "0"
    if value_type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise OnlineLayoutError(f"expected an integer, got {value!r}")
        return str(value)
    if value_type == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OnlineLayoutError(f"expected a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise OnlineLayoutError(f"{number!r} cannot be stored online (not finite)")
        return repr(number)
    if value_type == "string":
        if not isinstance(value, str):
            raise OnlineLayoutError(f"expected a string, got {value!r}")
        return value
    if isinstance(value, dt.datetime):
        return str(micros(value))
    raise OnlineLayoutError(f"expected a timestamp, got {value!r}")


def encode_python_value(value: object) -> str | None:
    """:func:`encode_value` with the type taken from the Python value (bool, int, float,
    str, datetime): what stores use on write; readers decode with the registry type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return encode_value(value, "bool")
    if isinstance(value, int):
        return encode_value(value, "int")
    if isinstance(value, float):
        return encode_value(value, "float")
    if isinstance(value, str):
        return encode_value(value, "string")
    if isinstance(value, dt.datetime):
        return encode_value(value, "timestamp")
    raise OnlineLayoutError(f"cannot store a {type(value).__name__} value online: {value!r}")


def _json_int(text: bytes) -> bytes:
    try:
        return orjson.dumps(int(text))
    except orjson.JSONEncodeError:  # beyond 64 bits: JSON (orjson) cannot carry it exactly
        raise OnlineLayoutError(f"integer {text[:40]!r} is out of the 64-bit range") from None


def _json_float(text: bytes) -> bytes:
    out = orjson.dumps(float(text))
    if out == b"null":  # orjson's JSON for NaN and the infinities
        raise OnlineLayoutError(f"{text[:40]!r} is not a finite number")
    return out


def _json_bool(text: bytes) -> bytes:
    if text == b"1":
        return b"true"
    if text == b"0":
        return b"false"
    raise OnlineLayoutError(f"{text[:40]!r} is not a boolean (1 or 0)")


def _json_timestamp(text: bytes) -> bytes:
    return b'"' + _timestamp(int(text)).isoformat().encode() + b'Z"'


def _timestamp(us: int) -> dt.datetime:
    try:
        return from_micros(us)
    except OverflowError:
        raise OnlineLayoutError(f"timestamp {us} us is out of range (years 1-9999)") from None


#: encoded bytes -> the JSON of the registry-typed value (what :func:`decode_value` reads,
#: serialized: numbers re-serialized, so a stored text never reaches JSON unchecked)
_JSON_ENCODERS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "int": _json_int,
    "float": _json_float,
    "bool": _json_bool,
    "string": lambda text: orjson.dumps(text.decode()),
    "timestamp": _json_timestamp,
}


def json_encoder(value_type: ValueType) -> Callable[[bytes], bytes]:
    """A function from a value's encoded bytes (as Redis returns them) to the JSON of its
    decoded value (timestamps as ISO 8601 UTC with ``Z``): the sidecar's path from the
    store to a response without building Python values first. It raises ValueError (see
    :func:`decode_value`) where :func:`decode_value` does, and for an integer beyond 64
    bits (JSON numbers are served as 64-bit integers or doubles)."""
    return _JSON_ENCODERS[value_type]


def decode_value(text: str | bytes | None, value_type: ValueType) -> object:
    """The registry-typed value of an encoded value (``None`` stays ``None``).

    Raises ValueError (:class:`OnlineLayoutError`, or the ValueError of ``int()``,
    ``float()`` or UTF-8 decoding) if the text is not a valid encoding of the type: an int or
    timestamp that is not an integer, a float that is not a finite number, a bool other than
    ``1``/``0``, a timestamp outside the years 1-9999. Readers turn that into an
    :class:`~featurestore.online.store.InvalidRecord` of the record holding it."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode()
    if value_type == "bool":
        if text == "1":
            return True
        if text == "0":
            return False
        raise OnlineLayoutError(f"{text[:40]!r} is not a boolean (1 or 0)")
    if value_type == "int":
        return int(text)
    if value_type == "float":
        number = float(text)
        if not math.isfinite(number):
            raise OnlineLayoutError(f"{text[:40]!r} is not a finite number")
        return number
    if value_type == "string":
        return text
    return _timestamp(int(text))
