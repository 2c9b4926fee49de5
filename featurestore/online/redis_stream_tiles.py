"""Stream partials in Redis (:mod:`featurestore.online.stream_tiles`, "Redis"): the apply
script and its arguments. :class:`~featurestore.online.redis_store.RedisStore` sends them.

One call of :data:`APPLY_SCRIPT` applies up to :data:`WRITES_PER_CALL`
:class:`~featurestore.online.stream_tiles.StreamWrite` (one partition's events for one entity
key and view each), the calls pipelined. The keys of one write are its partials hash, dedup
sorted set and the entity's record hash, all in one slot (one hash tag): on Redis Cluster a
call must hold the writes of one slot (the script itself touches only the keys it is given).

Per write and event, in order: an offset at or below the stored one of its partition is a
replay (skipped), an id already in the sorted set a duplicate (skipped), else the id is added
(ZADD) and each partial incremented (HINCRBY). Then the partition's offset is raised, both
keys' expiries moved later (never earlier), and, for a pruning write, the ids older than the
dedup horizon and the partials the batch owns or whose tile left every window removed.

Offsets are compared as zero-padded 20-digit decimal strings (exact beyond Lua's 2^53).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from featurestore.online.layout import redis_key
from featurestore.online.stream_tiles import StreamWrite

__all__ = ["APPLY_SCRIPT", "apply_calls", "offset_text"]

_US: Final = 1_000_000
#: digits of an offset as the script compares it
OFFSET_DIGITS: Final = 20

#: One call applies several writes of one view and one partition. KEYS: per write its
#: partials hash, dedup sorted set and record hash (3 keys). ARGV: the view, the offset field
#: ("o:<partition>", "" for no fencing), then per write, in order: partials expiry (ms,
#: shifted), dedup expiry (ms, shifted), dedup floor (s: ids scored below it go), n = number
#: of (hop, first live tile start) pairs for pruning (0: no pruning), the pairs, e = number of
#: events, then per event: offset (20 digits, "" when none), id, ingested_at (s), m, m (field,
#: units) pairs. Returns {applied, duplicates, replayed} summed over the writes.
APPLY_SCRIPT: Final = """
local applied, dups, replayed = 0, 0, 0
local view, ofield = ARGV[1], ARGV[2]
local i = 3
local w = 0
while i <= #ARGV do
  local partials, dedup, record = KEYS[3 * w + 1], KEYS[3 * w + 2], KEYS[3 * w + 3]
  w = w + 1
  local pexp, dexp, floor = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local nprune = tonumber(ARGV[i + 3])
  local prune_at = i + 4
  i = prune_at + 2 * nprune
  local nevents = tonumber(ARGV[i])
  i = i + 1
  local stored = ''
  if ofield ~= '' then
    stored = redis.call('HGET', partials, ofield) or ''
  end
  local top = stored
  for e = 1, nevents do
    local offset, id, ingested, m = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    i = i + 4
    if offset ~= '' and stored ~= '' and offset <= stored then
      replayed = replayed + 1
    elseif redis.call('ZADD', dedup, 'NX', ingested, id) == 0 then
      dups = dups + 1
    else
      for j = i, i + 2 * m - 1, 2 do
        redis.call('HINCRBY', partials, ARGV[j], ARGV[j + 1])
      end
      applied = applied + 1
    end
    if offset ~= '' and (top == '' or offset > top) then top = offset end
    i = i + 2 * m
  end
  if ofield ~= '' and top ~= stored then
    redis.call('HSET', partials, ofield, top)
  end
  if nprune > 0 then
    redis.call('ZREMRANGEBYSCORE', dedup, '-inf', '(' .. floor)
    local live = {}
    for p = prune_at, prune_at + 2 * nprune - 1, 2 do live[ARGV[p]] = tonumber(ARGV[p + 1]) end
    local cutoff = nil
    local ver = redis.call('HGET', record, '_ver:' .. view)
    if ver and string.match(ver, '^%-?%d+$') then cutoff = tonumber(ver) end
    local dead = {}
    for _, f in ipairs(redis.call('HKEYS', partials)) do
      local b, h, s = string.match(f, '^(%d+):(%d+):(%d+):')
      if b then
        local first = live[h]
        if (cutoff and tonumber(b) * 1000000 <= cutoff) or (first and tonumber(s) < first) then
          dead[#dead + 1] = f
          if #dead == 1000 then
            redis.call('HDEL', partials, unpack(dead))
            dead = {}
          end
        end
      end
    end
    if #dead > 0 then redis.call('HDEL', partials, unpack(dead)) end
  end
  for k, key in ipairs({partials, dedup}) do
    local want = tonumber(k == 1 and pexp or dexp)
    local current = redis.call('PEXPIRETIME', key)
    if current == -1 or (current >= 0 and want > current) then
      redis.call('PEXPIREAT', key, k == 1 and pexp or dexp)
    end
  end
end
return {applied, dups, replayed}
"""
#: writes per script call at most (one pipeline holds many calls)
WRITES_PER_CALL: Final = 64


def offset_text(offset: int | None) -> str:
    """An offset as the script compares it ("" for none)."""
    if offset is None:
        return ""
    if offset < 0 or offset >= 10**OFFSET_DIGITS:
        raise ValueError(f"offset {offset} is out of range (0 .. 10**{OFFSET_DIGITS})")
    return str(offset).zfill(OFFSET_DIGITS)


def apply_calls(
    writes: Sequence[StreamWrite],
    namespace: str,
    *,
    now_s: int,
    shift_s: int,
    dedup_horizon_s: int,
    slot_of: Callable[[StreamWrite], int] | None = None,
) -> list[tuple[str | bytes, ...]]:
    """The ``numkeys``, KEYS and ARGV of the script calls applying ``writes``, at most
    :data:`WRITES_PER_CALL` writes per call. Without ``slot_of`` (a single node) the keys of
    one call may belong to different slots; with it (a Redis Cluster) the writes of a call
    share one slot (``slot_of`` gives a write's).

    ``now_s``: the writer's now (epoch seconds), ``shift_s``: seconds from it to the wall
    clock (key expiries are shifted by it, as records' are). A write with ``prune`` hops
    also removes the ids older than the dedup horizon, the partials the batch owns and those
    of tiles that left every window at ``now_s``."""
    calls: list[tuple[str | bytes, ...]] = []
    groups: dict[tuple[str, str, bool, int], list[StreamWrite]] = {}
    for write in writes:
        fencing = all(event.offset is not None for event in write.events)
        slot = -1 if slot_of is None else slot_of(write)
        groups.setdefault((write.view, write.partition, fencing, slot), []).append(write)
    for (view, partition, fencing, _), group in groups.items():
        for begin in range(0, len(group), WRITES_PER_CALL):
            calls.append(
                _call(
                    group[begin : begin + WRITES_PER_CALL],
                    namespace,
                    view,
                    f"o:{partition}" if fencing else "",
                    now_s,
                    shift_s,
                    dedup_horizon_s,
                )
            )
    return calls


def _call(
    writes: Sequence[StreamWrite],
    namespace: str,
    view: str,
    offset_field: str,
    now_s: int,
    shift_s: int,
    dedup_horizon_s: int,
) -> tuple[str | bytes, ...]:
    """One script call of writes sharing a view and a partition (see :data:`APPLY_SCRIPT`)."""
    keys: list[str] = []
    args: list[str] = [view, offset_field]
    fencing = bool(offset_field)
    partials_prefix, dedup_prefix = f"{namespace}:sp:{view}:", f"{namespace}:sd:{view}:"
    for write in writes:
        tail = _tail(write.key)
        keys += (
            partials_prefix + tail,
            dedup_prefix + tail,
            f"{namespace}:{write.entity}:{tail}",
        )
        events = write.events
        newest_s = max(event.ingested_us for event in events) // _US if events else now_s
        args += (
            str((write.expires_at + shift_s) * 1000),
            str((max(newest_s, now_s) + dedup_horizon_s + shift_s) * 1000),
            str(newest_s - dedup_horizon_s),
            str(len(write.prune)),
        )
        for hop, longest in write.prune:
            args += (str(hop), str(now_s - hop - longest + 1))
        args.append(str(len(events)))
        for event in events:
            args += (
                offset_text(event.offset) if fencing else "",
                event.event_id,
                str(event.ingested_us // _US),
                str(len(event.additions)),
            )
            for name, units in event.additions:
                args += (name, str(units))
    return (str(len(keys)), *keys, *args)


_SPECIAL: Final = frozenset(":{}%#")


def _tail(key: Sequence[str]) -> str:
    """``{<first part>}[:<other parts>]`` of an entity key, as in its record's Redis key
    (:func:`featurestore.online.layout.redis_key`)."""
    if len(key) == 1 and _SPECIAL.isdisjoint(key[0]) and key[0]:
        return f"{{{key[0]}}}"
    record = redis_key("x", key, "n")
    return record[len("n:x:") :]
