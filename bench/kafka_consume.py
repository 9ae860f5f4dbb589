"""How many messages per second one Kafka subscription handles with a no-op handler.

    python bench/kafka_consume.py [--messages 5000] [--runs 3]

Needs the Kafka of ``scripts/services up`` on 127.0.0.1:9092 and the Kafka adapter.
Each run: a group joins a fresh topic (its start is committed), leaves, N messages are
produced in bulk, the group comes back; the clock runs from the first handled message
to the last, so joining and producing are not counted. Prints the median of the runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from skalds.ports import BusMessage
from skalds_kafka import ConnectionSettings, KafkaEventBus

BOOTSTRAP = "127.0.0.1:9092"


class Counter:
    """A no-op handler that notes when the first and the n-th message arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def __call__(self, msg: BusMessage) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        if self.count == self.expected:
            self.last = now
            self.done.set()


def one_run(bus: KafkaEventBus, topic: str, messages: int) -> float:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    bus.subscribe([topic], lambda _msg: None, group=group).close()  # fixes the group's start
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
    for i in range(messages):
        producer.produce(topic, key=f"task-{i % 50}", value=b"x" * 100)
        producer.poll(0)
    producer.flush(30)
    counter = Counter(messages)
    sub = bus.subscribe([topic], counter, group=group)
    try:
        if not counter.done.wait(120):
            raise RuntimeError(f"only {counter.count} of {messages} messages handled")
    finally:
        sub.close()
    return (messages - 1) / (counter.last - counter.first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bus = KafkaEventBus(ConnectionSettings(BOOTSTRAP), create_seed_topics=False)
    topics = [f"bench.consume-{uuid.uuid4().hex[:8]}" for _ in range(args.runs)]
    try:
        rates = [one_run(bus, topic, args.messages) for topic in topics]
    finally:
        bus.close()
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        for future in admin.delete_topics(topics).values():
            future.result(30)
    print("runs (msg/s):", ", ".join(f"{r:,.0f}" for r in rates))
    print(f"median: {statistics.median(rates):,.0f} msg/s over {args.messages} messages")


if __name__ == "__main__":
    main()
