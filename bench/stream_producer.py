"""The background load of bench/stream_freshness.py: ``rate`` transactions per second of
random users, keyed by user, event and ingestion time = now, for ``duration`` seconds, into a
Kafka topic. Prints what it sent as JSON.

    python bench/stream_producer.py BOOTSTRAP TOPIC RATE DURATION USERS
"""

from __future__ import annotations

import json
import random
import sys
import time

from confluent_kafka import Producer


def main(bootstrap: str, topic: str, rate: float, duration: float, users: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    rng = random.Random(7)
    sent, start = 0, time.time()
    while time.time() - start < duration:
        due = int((time.time() - start) * rate)
        while sent < due:
            clock = time.time()
            now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock))
            now += f".{int(clock % 1 * 1e6):06d}Z"
            user = f"usr_{rng.randrange(users):08d}"
            event = {
                "transaction_id": f"bg_{sent}",
                "user_id": user,
                "merchant_id": f"mer_{rng.randrange(100):06d}",
                "device_id": None,
                "amount": f"{rng.randrange(500)}.{rng.randrange(100):02d}",
                "currency": "USD",
                "transacted_at": now,
                "ingested_at": now,
            }
            try:
                producer.produce(topic, key=user.encode(), value=json.dumps(event).encode())
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(30)
    print(json.dumps({"sent": sent, "seconds": time.time() - start}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
