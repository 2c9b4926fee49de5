"""The clock the loader and the sidecar read (featurestore/clock.py): units, UTC, what a
pinned clock does with durations, and a manual clock that moves both readings together."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

import pytest

from featurestore.clock import (
    SYSTEM_CLOCK,
    Clock,
    ManualClock,
    PinnedClock,
    SystemClock,
    clock_for,
    parse_now,
)

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def test_the_system_clock_is_aware_utc_and_the_real_monotonic_clock() -> None:
    before = dt.datetime.now(dt.UTC)
    now = SYSTEM_CLOCK.now()
    after = dt.datetime.now(dt.UTC)
    assert now.tzinfo is dt.UTC and before <= now <= after
    assert SYSTEM_CLOCK.real_time
    # the builtin itself, so the cache's hot path calls no Python wrapper
    assert SYSTEM_CLOCK.monotonic is time.monotonic
    assert isinstance(SYSTEM_CLOCK, SystemClock)


def test_a_pinned_clock_fixes_the_wall_time_but_not_durations() -> None:
    clock = PinnedClock(dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert clock.now() == START and clock.now().tzinfo is dt.UTC
    assert PinnedClock(dt.datetime(2026, 5, 1)).now() == START  # naive means UTC
    assert not clock.real_time
    first = clock.monotonic()
    time.sleep(0.01)
    assert clock.monotonic() - first >= 0.009  # cache TTLs still run out in real time
    assert clock.now() == START


def test_clock_for_a_pinned_now_or_the_system_clock() -> None:
    assert clock_for(None) is SYSTEM_CLOCK
    pinned = clock_for(parse_now("2026-05-01T00:00:00Z"))
    assert isinstance(pinned, PinnedClock) and pinned.now() == START


def test_a_manual_clock_stands_still_until_advanced_and_moves_both_readings() -> None:
    clock = ManualClock(START)
    assert isinstance(clock, Clock) and not clock.real_time
    wall, mono = clock.now(), clock.monotonic()
    time.sleep(0.01)
    assert (clock.now(), clock.monotonic()) == (wall, mono)
    clock.advance(1.25)
    assert clock.now() == START + dt.timedelta(seconds=1.25)
    assert clock.monotonic() == mono + 1.25
    clock.advance(0)
    assert clock.now() == START + dt.timedelta(seconds=1.25)
    clock.set(START + dt.timedelta(days=2))
    assert clock.now() == START + dt.timedelta(days=2)
    assert clock.monotonic() == pytest.approx(mono + 2 * 86_400)
    assert clock.now().tzinfo is dt.UTC


def test_a_manual_clock_does_not_accumulate_rounding() -> None:
    clock = ManualClock(START, monotonic_start=0.0)
    for _ in range(1000):
        clock.advance(0.001)
    assert clock.now() == START + dt.timedelta(seconds=1)
    assert clock.monotonic() == pytest.approx(1.0)


def test_a_manual_clock_never_goes_back() -> None:
    clock = ManualClock(dt.datetime(2026, 5, 1))  # naive means UTC
    assert clock.now() == START
    for bad in (-0.001, float("nan")):
        with pytest.raises(ValueError, match="cannot go back"):
            clock.advance(bad)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(START - dt.timedelta(seconds=1))
    assert clock.now() == START


def test_a_manual_clock_read_while_another_thread_advances_it_never_decreases() -> None:
    clock = ManualClock(START)
    done = threading.Event()
    seen: list[tuple[dt.datetime, float]] = []

    def read() -> None:
        while not done.is_set():
            seen.append((clock.now(), clock.monotonic()))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(2000):
        clock.advance(0.5)
    done.set()
    reader.join()
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(seen))
    assert clock.now() == START + dt.timedelta(seconds=1000)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-05-01T00:00:00Z", START),
        ("2026-05-01T02:00:00+02:00", START),
        ("2026-05-01T00:00:00", START),
        (" 2026-05-01 ", START),
        (None, None),
        ("  ", None),
    ],
)
def test_parse_now(text: str | None, want: dt.datetime | None) -> None:
    got = parse_now(text)
    assert got == want
    if got is not None:
        assert got.tzinfo is dt.UTC


def test_parse_now_names_a_bad_value() -> None:
    with pytest.raises(ValueError, match="'yesterday' is not ISO 8601"):
        parse_now("yesterday")
