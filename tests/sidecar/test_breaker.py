"""The store's circuit breaker (sidecar/breaker.py), on a fake clock."""

from __future__ import annotations

from sidecar.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


# --- circuit breaker ---------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_failures_only() -> None:
    clock = FakeClock()
    changes: list[str] = []
    breaker = CircuitBreaker(3, 1.0, clock=clock, on_change=changes.append)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.allow()
    breaker.success()  # not consecutive: the count starts again
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and changes == ["open"]
    assert not breaker.allow()


def test_breaker_half_opens_after_the_cooldown_with_a_single_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 2.0, clock=clock)
    breaker.allow()
    breaker.failure()
    clock.now += 1.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.state == "half_open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # others still refused while it runs
    breaker.failure()  # the trial failed: open for another cool-down
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now += 2.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))


def test_breaker_cooldown_doubles_on_failed_trials_and_resets_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.5, min_cooldown_s=0.125, clock=clock)  # binary-exact
    breaker.allow()
    breaker.failure()
    waits = []
    for _ in range(6):  # every trial fails: the cool-down doubles up to 1.5 s
        start = clock.now
        while not breaker.allow():
            clock.now += 0.125
        waits.append(clock.now - start)
        breaker.failure()
    assert waits == [0.125, 0.25, 0.5, 1.0, 1.5, 1.5]
    clock.now += 1.5
    assert breaker.allow()
    breaker.success()
    breaker.allow()
    breaker.failure()  # a new outage starts again at the shortest cool-down
    clock.now += 0.125
    assert breaker.allow()


def test_breaker_ignores_late_failures_while_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 1.0, clock=clock)
    for _ in range(2):
        breaker.allow()
    breaker.failure()
    breaker.failure()
    opened_at = clock.now
    clock.now += 0.5
    breaker.failure()  # a read started before the circuit opened
    clock.now = opened_at + 1.0  # the cool-down counts from the opening, not the late failure
    assert breaker.allow()
