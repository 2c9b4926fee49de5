"""Cache admission (sidecar/admission.py): the doorkeeper."""

from __future__ import annotations

from sidecar.admission import Doorkeeper


def test_doorkeeper_admits_on_the_second_offer_and_starts_over_when_full() -> None:
    door = Doorkeeper(1000)
    items = [("view", (f"k{i}",)) for i in range(1000)]
    early = sum(door.admit(item) for item in items)  # first offers: only false positives
    assert early <= 1000 // 8
    assert all(door.admit(item) for item in items)  # second offers: all admitted
    for i in range(2000):  # 2,000 other items: past capacity, so cleared at least once
        door.admit(("other", (str(i),)))
    assert sum(door.admit(item) for item in items) <= 1000 // 4  # forgotten, but for ~1/8


def test_doorkeeper_admits_only_a_second_offer_within_the_ttl() -> None:
    door = Doorkeeper(1000)
    items = [("view", (f"k{i}",)) for i in range(100)]
    assert len(door.admitted(items, 10.0, 0.1)) <= 100 // 8  # first offers
    # offered again 0.5 s later: further apart than a 100 ms TTL, not admitted
    assert len(door.admitted(items, 10.5, 0.1)) <= 100 // 8
    # and again 50 ms after that: within the TTL of the last offer, all admitted, in order
    assert door.admitted(items, 10.55, 0.1) == list(range(100))
    # a 5 s TTL admits offers 4 s apart; a TTL longer than the remembered range any offer
    assert door.admitted(items, 14.55, 5.0) == list(range(100))
    assert door.admitted(items, 4000.0, 1e9) == list(range(100))
