"""One consumer group member on a thread of its own: at least once, committed in batches.

An offset is *stored* (``store_offsets``) after its message was handled, never
before; librdkafka commits the stored offsets every ``commit_interval`` seconds
(``enable.auto.commit`` with ``enable.auto.offset.store=false``), when partitions are
revoked in a rebalance, and when the subscription closes. A consumer that crashes
may therefore see up to ``commit_interval`` of already handled messages again:
handlers are idempotent. Committing once per message instead would cost a broker
round trip per message and cap a group at a few hundred messages per second.

Where a new group starts is decided once, when its partitions are assigned: a
partition without a committed offset starts at its current end (high watermark),
and that position is committed right away. ``auto.offset.reset=latest`` would
instead resolve "the end" lazily at the first fetch, after ``subscribe`` returned,
and silently skip what was published in between. A group that comes back resumes
from its committed offsets, so nothing published while it was away is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from skalds.errors import BackendUnavailableError
from skalds.ports.event_bus import BusMessage, MessageHandler, Subscription
from skalds.utils.logging import logger
from skalds_kafka._errors import LIBRDKAFKA_LOGGER, ErrorReporter
from skalds_kafka._settings import ConnectionSettings

__all__ = ["DEFAULT_COMMIT_INTERVAL", "DeadLetter", "KafkaSubscription"]

DeadLetter = Callable[[BusMessage, str, str], None]
"""Called with (message, group, reason) for a message whose handler raised."""

# poll() blocks up to this long, which bounds how late close() notices the stop.
_POLL_SECONDS = 0.25
# While the broker is unreachable, check every this often whether it is back.
_PROBE_SECONDS = 5.0
_OFFSET_TIMEOUT = 10.0
DEFAULT_COMMIT_INTERVAL = 0.2


class KafkaSubscription(Subscription):
    """Consume ``topics`` as ``group``; one message at a time, at least once.

    A message's offset is stored once its handler returned (also when it raised) and
    committed with the others every ``commit_interval`` seconds, at a rebalance and at
    ``close()``. After a crash the group may get up to ``commit_interval`` of handled
    messages again, so handlers must be idempotent.

    Args:
        settings: where Kafka is and how to authenticate.
        topics: topics to consume (they must exist: the bus creates them).
        handler: called with each message on this subscription's thread.
        group: the consumer group id.
        close_timeout: how long ``close()`` waits for a running handler.
        commit_interval: seconds between two commits of the stored offsets.
        dead_letter: where to copy messages whose handler raised (optional).
        extra: more librdkafka properties (tests, tuning).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        topics: Sequence[str],
        handler: MessageHandler,
        *,
        group: str,
        close_timeout: float = 10.0,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        dead_letter: DeadLetter | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.topics = [str(t) for t in topics]
        self.group = group
        self.where = settings.bootstrap
        self._handler = handler
        self._dead_letter = dead_letter
        self._close_timeout = close_timeout
        self._reporter = ErrorReporter(f"consumer of group {group}", self.where)
        self._commit_failing = False
        self._consumer = Consumer(
            {
                **settings.client_config(),
                "group.id": group,
                # Only offsets stored after handling are committed, in the background
                # and when partitions are revoked or the consumer closes.
                "enable.auto.commit": True,
                "auto.commit.interval.ms": max(1, round(commit_interval * 1000)),
                "enable.auto.offset.store": False,
                # Only used when a committed offset is no longer retained (or the
                # committed offsets cannot be read): replay rather than lose.
                "auto.offset.reset": "earliest",
                # A node that crashed and restarts rejoins its own group; a short
                # session lets the group drop the dead member quickly.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                "reconnect.backoff.max.ms": 2_000,
                "log.connection.close": False,
                "error_cb": self._reporter,
                "on_commit": self._on_commit,
                "logger": LIBRDKAFKA_LOGGER,
                **(extra or {}),
            }
        )
        # Guards every use of the consumer: poll, commit and close never overlap.
        self._lock = threading.Lock()
        self._consumer_closed = False
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._last_probe = 0.0
        self._thread = threading.Thread(target=self._run, name=f"skalds-kafka-{group}", daemon=True)

    def start(self, timeout: float) -> None:
        """Join the group; return once partitions are assigned and positioned.

        Raises:
            BackendUnavailableError: no assignment within ``timeout`` seconds.
        """
        try:
            self._consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except KafkaException as exc:
            self.close()
            raise BackendUnavailableError(
                f"Kafka at {self.where}: cannot subscribe group {self.group}: {exc.args[0]}"
            ) from None
        self._thread.start()
        if self._assigned.wait(timeout):
            return
        self.close()
        last = f" (last error: {self._reporter.last_error})" if self._reporter.last_error else ""
        raise BackendUnavailableError(
            f"Kafka at {self.where} assigned no partitions of {', '.join(self.topics)} to "
            f"group {self.group} within {timeout:g} s{last}"
        )

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (or the subscription stopped by itself)."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop after the message being handled, then leave the group.

        The offsets stored so far are committed as the consumer leaves. A handler still
        busy after ``close_timeout`` seconds is left running: the consumer is closed
        anyway and that message stays uncommitted, so the group gets it again.
        """
        self._stop.set()
        if threading.current_thread() is self._thread:
            return  # called by the handler: the loop closes the consumer after it returns
        if self._thread.ident is not None:
            self._thread.join(self._close_timeout)
            if self._thread.is_alive():
                logger.warning(
                    "Kafka consumer of group %s: handler still busy after %g s; closing "
                    "anyway, its message stays uncommitted and will be delivered again",
                    self.group,
                    self._close_timeout,
                )
        self._close_consumer()

    # -- the consumer thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # never let one bad poll end the subscription
                    logger.exception("Kafka consumer of group %s: unexpected error", self.group)
                    self._stop.wait(1.0)
        finally:
            self._close_consumer()

    def _step(self) -> None:
        with self._lock:
            if self._consumer_closed:
                self._stop.set()
                return
            msg = self._consumer.poll(_POLL_SECONDS)
            if msg is None:
                self._probe_if_unreachable()
                return
        err = msg.error()
        if err is not None:
            self._on_message_error(msg, err)
            return
        self._reporter.recovered()
        self._handle(msg)

    def _handle(self, msg: Message) -> None:
        bus_msg = _bus_message(msg)
        try:
            self._handler(bus_msg)
        except Exception as exc:
            logger.exception(
                "handler of group %s failed on %s; message skipped", self.group, bus_msg.where()
            )
            if self._dead_letter is not None:
                self._dead_letter(bus_msg, self.group, f"{type(exc).__name__}: {exc}")
        self._store(msg, bus_msg.where())

    def _store(self, msg: Message, where: str) -> None:
        """Mark ``msg`` handled: librdkafka commits it with the next batch."""
        with self._lock:
            if self._consumer_closed:
                logger.warning(
                    "Kafka consumer of group %s closed while %s was handled; not committed, "
                    "it will be delivered again",
                    self.group,
                    where,
                )
                return
            try:
                self._consumer.store_offsets(message=msg)
            except KafkaException as exc:  # e.g. its partition was revoked meanwhile
                logger.warning(
                    "Kafka consumer of group %s could not store the offset of %s (%s); "
                    "it may be delivered again",
                    self.group,
                    where,
                    exc.args[0],
                )

    def _on_message_error(self, msg: Message, err: KafkaError) -> None:
        """A per-message error is a poison message (skip it); anything else is reported."""
        if err.code() == KafkaError._PARTITION_EOF:
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None or offset < 0:
            self._reporter(err)
            return
        logger.warning(
            "Kafka consumer of group %s: skipping unreadable message at %s[%d]@%d: %s",
            self.group,
            topic,
            partition,
            offset,
            err.str(),
        )
        after = TopicPartition(topic, partition, offset + 1)
        with self._lock:
            if self._consumer_closed:
                return
            try:
                self._consumer.seek(after)
                self._consumer.store_offsets(offsets=[after])  # committed with the batch
            except KafkaException as exc:
                logger.warning("could not skip %s[%d]@%d: %s", topic, partition, offset, exc)

    def _probe_if_unreachable(self) -> None:
        """During an outage, notice the broker's return even when no message arrives."""
        now = time.monotonic()
        if not self._reporter.unreachable or now - self._last_probe < _PROBE_SECONDS:
            return
        self._last_probe = now
        try:
            self._consumer.list_topics(timeout=1.0)
        except KafkaException:
            return
        self._reporter.recovered()

    def _close_consumer(self) -> None:
        with self._lock:
            if self._consumer_closed:
                return
            self._consumer_closed = True
            try:
                self._consumer.close()  # leaves the group cleanly
            except Exception as exc:
                logger.debug("closing the Kafka consumer of group %s: %s", self.group, exc)

    # -- callbacks (run inside poll or close, with the lock held) ----------------------

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Log a failing commit once until one succeeds (they repeat every interval)."""
        failed = err if err is not None else next((p.error for p in partitions if p.error), None)
        if failed is None:
            if self._commit_failing:
                self._commit_failing = False
                logger.info("Kafka consumer of group %s: commits succeed again", self.group)
            return
        if failed.code() == KafkaError._NO_OFFSET or self._commit_failing:
            return
        self._commit_failing = True
        logger.warning(
            "Kafka consumer of group %s could not commit its offsets (%s); handled "
            "messages may be delivered again",
            self.group,
            failed.str(),
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            positions = _start_positions(consumer, partitions)
        except KafkaException as exc:
            logger.warning(
                "Kafka consumer of group %s cannot read its committed offsets (%s); "
                "starting from them lazily, or from the earliest retained message",
                self.group,
                exc.args[0],
            )
            positions = partitions
        consumer.assign(positions)
        self._reporter.recovered()
        logger.debug(
            "Kafka group %s assigned %s",
            self.group,
            ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in positions) or "nothing",
        )
        self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # librdkafka commits the stored offsets of these partitions as it unassigns
        # them, right after this returns (enable.auto.commit), and waits for that
        # commit before rejoining: the next owner resumes after what was handled.
        logger.debug("Kafka group %s: %d partition(s) revoked", self.group, len(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning(
            "Kafka consumer of group %s lost %d partition(s); it rejoins, and messages "
            "not committed yet are delivered again",
            self.group,
            len(partitions),
        )


def _start_positions(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Committed offsets; partitions without one start (and are committed) at the end.

    That commit is explicit and synchronous: the start must be durable before
    ``subscribe`` returns, not whenever the next background commit happens.
    """
    if not partitions:
        return partitions
    committed = consumer.committed(partitions, timeout=_OFFSET_TIMEOUT)
    fresh: list[TopicPartition] = []
    for tp in committed:
        if tp.error is not None:
            raise KafkaException(tp.error)
        if tp.offset < 0:
            probe = TopicPartition(tp.topic, tp.partition)
            _low, high = consumer.get_watermark_offsets(probe, timeout=_OFFSET_TIMEOUT)
            tp.offset = high
            fresh.append(tp)
    if fresh:
        consumer.commit(offsets=fresh, asynchronous=False)
    return committed


def _bus_message(msg: Message) -> BusMessage:
    key = msg.key()
    raw_headers: Any = msg.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    headers = {
        str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")
        for k, v in pairs
    }
    return BusMessage(
        topic=msg.topic() or "",
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        value=msg.value() or b"",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        headers=headers,
    )
