"""A circuit breaker around the online store, so that a dead store is not waited on.

States
    ``closed``     every read goes to the store; ``failure_threshold`` consecutive failures
                   (errors or reads over the time budget) open the circuit.
    ``open``       no read goes to the store (answers come from the cache or the defaults)
                   until the cool-down has passed since the circuit opened.
    ``half_open``  after the cool-down, exactly one trial read goes to the store while the
                   others are still refused; its success closes the circuit, its failure
                   opens it again for twice the cool-down.

Cool-down: the first opening lasts ``min_cooldown_s``, each failed trial doubles it up to
``cooldown_s``, a success resets it. A store that hiccups (a 30 ms stall fails every read in
flight) is retried after 100 ms instead of a full second, while a dead store is still only
probed once per ``cooldown_s``.

A success in any state closes the circuit (the store answered). Failures reported while the
circuit is open (reads started before it opened) change nothing. Thread-safe; ``clock``
is monotonic seconds (:func:`time.monotonic`, or the sidecar clock's
:meth:`~featurestore.clock.Clock.monotonic`, which a test can advance).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Literal

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        *,
        min_cooldown_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.max_cooldown_s = cooldown_s
        self.min_cooldown_s = min(cooldown_s, min_cooldown_s or cooldown_s)
        #: the current cool-down
        self.cooldown_s = self.min_cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state: State = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> State:
        with self._lock:
            if self._state == OPEN and self._clock() >= self._opened_at + self.cooldown_s:
                return HALF_OPEN  # the next allow() starts the trial
            return self._state

    def allow(self) -> bool:
        """Whether a read may go to the store now. A True answer must be followed by
        :meth:`success` or :meth:`failure` once the read is over."""
        with self._lock:
            state = self._state
            if state == CLOSED:
                return True
            if state == OPEN:
                if self._clock() < self._opened_at + self.cooldown_s:
                    return False
                self._set(HALF_OPEN)
            if self._trial_running:
                return False
            self._trial_running = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_running = False
            self.cooldown_s = self.min_cooldown_s
            if self._state != CLOSED:
                self._set(CLOSED)

    def failure(self) -> None:
        with self._lock:
            if self._state == HALF_OPEN:
                self._trial_running = False
                self.cooldown_s = min(self.cooldown_s * 2, self.max_cooldown_s)
                self._open()
            elif self._state == CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._set(OPEN)

    def _set(self, state: State) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
