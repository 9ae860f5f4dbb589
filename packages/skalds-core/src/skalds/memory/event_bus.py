"""In-memory event bus with consumer groups and committed offsets (like Kafka's)."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from skalds.errors import PublishError
from skalds.ports.event_bus import BusMessage, EventBus, MessageHandler, Subscription
from skalds.utils.logging import logger

__all__ = ["MemoryEventBus"]


@dataclass(frozen=True)
class _Entry:
    seq: int
    message: BusMessage


class MemoryEventBus(EventBus):
    """A per-instance message log per topic; each consumer group keeps its own offsets.

    A group's first subscription starts at the end of each topic; later
    subscriptions of the same group resume at the committed offset. Messages every
    known group has consumed are kept up to ``max_retained`` per topic.

    One lock guards the logs; each waiting subscription sleeps on a condition of its
    own, and a publish wakes only the subscriptions of that topic. (One condition
    for all woke every subscription thread of the process for every message: a node
    and a controller in one process have half a dozen, and each wake-up costs a
    thread switch and a turn at the GIL.)
    """

    def __init__(self, max_retained: int = 100_000, max_message_bytes: int = 1_000_000) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Condition]] = defaultdict(set)
        self._logs: dict[str, list[_Entry]] = defaultdict(list)
        self._base: dict[str, int] = defaultdict(int)
        self._next: dict[tuple[str, str], int] = {}
        self._seq = itertools.count()
        self._max_retained = max_retained
        self._max_message_bytes = max_message_bytes
        self._closed = False

    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Append a message; raise ``PublishError`` when closed or oversized."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > self._max_message_bytes:
            raise PublishError(
                f"message for {topic} is {len(data)} bytes, over the "
                f"{self._max_message_bytes}-byte limit"
            )
        topic = str(topic)
        with self._lock:
            if self._closed:
                raise PublishError("event bus is closed")
            log = self._logs[topic]
            offset = self._base[topic] + len(log)
            log.append(_Entry(next(self._seq), BusMessage(topic, key, data, 0, offset)))
            if len(log) > self._max_retained:
                drop = len(log) - self._max_retained
                del log[:drop]
                self._base[topic] += drop
            for waiter in self._waiting.get(topic, ()):
                waiter.notify()

    def subscribe(
        self, topics: Sequence[str], handler: MessageHandler, *, group: str
    ) -> Subscription:
        """Consume ``topics`` as ``group`` on a thread of its own."""
        names = [str(t) for t in topics]
        with self._lock:
            for topic in names:
                end = self._base[topic] + len(self._logs[topic])
                self._next.setdefault((group, topic), end)
        return _MemorySubscription(self, names, handler, group)

    def close(self) -> None:
        """Stop every subscription; later publishes fail."""
        with self._lock:
            self._closed = True
            for waiters in self._waiting.values():
                for waiter in waiters:
                    waiter.notify()

    # -- used by subscriptions --------------------------------------------------

    def _claim(
        self, topics: list[str], group: str, stop: threading.Event, wake: threading.Condition
    ) -> BusMessage | None:
        """Wait on ``wake`` for the next message of ``group`` (lowest publish order)."""
        with self._lock:
            while not (stop.is_set() or self._closed):
                best: _Entry | None = None
                for topic in topics:
                    pos = self._next[(group, topic)]
                    base = self._base[topic]
                    if pos < base:
                        logger.warning(
                            "group %s fell behind the retained log of %s; skipped %d messages",
                            group,
                            topic,
                            base - pos,
                        )
                        pos = self._next[(group, topic)] = base
                    log = self._logs[topic]
                    if pos - base < len(log):
                        entry = log[pos - base]
                        if best is None or entry.seq < best.seq:
                            best = entry
                if best is not None:
                    msg = best.message
                    self._next[(group, msg.topic)] = msg.offset + 1
                    return msg
                for topic in topics:
                    self._waiting[topic].add(wake)
                try:
                    wake.wait()
                finally:
                    for topic in topics:
                        self._waiting[topic].discard(wake)
            return None

    def _wake(self, wake: threading.Condition) -> None:
        with self._lock:
            wake.notify()


class _MemorySubscription(Subscription):
    def __init__(
        self, bus: MemoryEventBus, topics: list[str], handler: MessageHandler, group: str
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._handler = handler
        self._group = group
        self._stop = threading.Event()
        self._wake = threading.Condition(bus._lock)
        self._thread = threading.Thread(target=self._loop, name=f"skalds-bus-{group}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            msg = self._bus._claim(self._topics, self._group, self._stop, self._wake)
            if msg is None:
                return
            try:
                self._handler(msg)
            except Exception:
                logger.exception("handler for %s failed; message skipped", msg.where())

    def close(self) -> None:
        self._stop.set()
        self._bus._wake(self._wake)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
