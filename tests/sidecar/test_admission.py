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
