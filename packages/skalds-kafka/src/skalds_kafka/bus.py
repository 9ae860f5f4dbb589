"""The Kafka event bus: shared topics keyed by task id, at-least-once consumer groups.

``publish`` blocks until Kafka confirmed the message (idempotent producer, acks=all)
and raises :class:`~skalds.errors.PublishError` otherwise; ``publish_nowait`` returns
once the message is queued and logs a delivery that failed; nothing is dropped
silently. Each ``subscribe`` is one consumer on its own thread that stores a
message's offset only after its handler returned; stored offsets are committed every
``commit_interval`` seconds, at a rebalance and at close, so a crash may redeliver up
to that much of what was handled (handlers are idempotent). Nothing here is async:
call ``publish`` from a thread, never from inside an event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skalds.errors import BackendUnavailableError, PublishError
from skalds.ports.event_bus import BusMessage, EventBus, MessageHandler, Subscription, Topic
from skalds.utils.logging import logger
from skalds_kafka._admin import TopicAdmin
from skalds_kafka._producer import ConfirmingProducer
from skalds_kafka._settings import ConnectionSettings, parse_kafka_url
from skalds_kafka.subscription import DEFAULT_COMMIT_INTERVAL, KafkaSubscription

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig

__all__ = ["DEAD_LETTER_TOPIC", "KafkaEventBus"]

DEAD_LETTER_TOPIC = "skalds.dead-letter"
DEFAULT_PUBLISH_TIMEOUT = 10.0


class KafkaEventBus(EventBus):
    """Event bus on Kafka; building it checks the broker and creates the seed topics.

    Args:
        settings: where Kafka is and how to authenticate.
        topic_partitions: partitions of each topic the bus creates.
        replication_factor: replicas of each topic the bus creates.
        publish_timeout: seconds ``publish`` waits for Kafka's confirmation.
        connect_timeout: seconds the broker has to answer when the bus is built.
        assign_timeout: seconds ``subscribe`` waits for its partitions.
        close_timeout: seconds ``Subscription.close`` waits for a running handler.
        commit_interval: seconds between two commits of a consumer's handled offsets
            (also committed at a rebalance and at close).
        dead_letter: copy messages whose handler raised to ``skalds.dead-letter``.
        create_seed_topics: create every :class:`~skalds.ports.event_bus.Topic` now.
        consumer_options: more librdkafka properties for every consumer.
        producer_options: more librdkafka properties for the producer.

    Raises:
        BackendUnavailableError: no broker answered within ``connect_timeout``.
        ConfigError: the security settings are inconsistent, or Kafka refused a topic.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        topic_partitions: int = 3,
        replication_factor: int = 1,
        publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
        connect_timeout: float = 5.0,
        assign_timeout: float = 30.0,
        close_timeout: float = 10.0,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        dead_letter: bool = False,
        create_seed_topics: bool = True,
        consumer_options: dict[str, Any] | None = None,
        producer_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.where = settings.bootstrap
        self.dead_letter = dead_letter
        self._assign_timeout = assign_timeout
        self._close_timeout = close_timeout
        self._commit_interval = commit_interval
        self._consumer_options = dict(consumer_options or {})
        self._admin = TopicAdmin(
            settings,
            partitions=topic_partitions,
            replication_factor=replication_factor,
            timeout=max(connect_timeout, 5.0),
        )
        seeds = [t.value for t in Topic] if create_seed_topics else []
        if dead_letter:
            seeds.append(DEAD_LETTER_TOPIC)
        try:
            self._admin.metadata(connect_timeout)  # fail now, with host:port, not at first use
            if seeds:
                self._admin.ensure(seeds)
        finally:
            # No client threads until first use: a node given this bus forks after it.
            self._admin.release()
        self._producer = ConfirmingProducer(
            settings, timeout=publish_timeout, client="producer", extra=producer_options
        )
        self._subscriptions: list[KafkaSubscription] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, config: SkaldConfig) -> KafkaEventBus:
        """Build the bus for ``kafka://host:port[,host2:port][?options]`` and ``config``.

        Partitions and replication factor come from ``KAFKA_TOPIC_PARTITIONS`` /
        ``KAFKA_REPLICATION_FACTOR``, the producer's batching wait from
        ``KAFKA_LINGER_MS``, credentials from the ``KAFKA_*`` security fields.
        """
        options = parse_kafka_url(url)
        return cls(
            ConnectionSettings.from_skald_config(options.bootstrap, config),
            topic_partitions=config.kafka_topic_partitions,
            replication_factor=config.kafka_replication_factor,
            publish_timeout=options.publish_timeout or DEFAULT_PUBLISH_TIMEOUT,
            dead_letter=options.dead_letter or config.kafka_dead_letter,
            producer_options={"linger.ms": config.kafka_linger_ms},
        )

    # -- EventBus --------------------------------------------------------------------

    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Send one message and wait for Kafka's confirmation (blocks the calling thread).

        Raises:
            PublishError: oversized, queue full, bus closed, or not confirmed in time.
        """
        if self._closed:
            raise PublishError("event bus is closed")
        self._producer.send(str(topic), key, value)

    def publish_nowait(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Queue one message for Kafka and return; a failed delivery is logged.

        Same producer as :meth:`publish` (idempotent, acks=all), so per key the order
        holds across both. Messages still queued at :meth:`close` are delivered then.
        """
        try:
            if self._closed:
                raise PublishError("event bus is closed")
            self._producer.send_nowait(str(topic), key, value)
        except PublishError as exc:
            logger.warning("could not publish %s (key %s): %s", topic, key, exc)

    def subscribe(
        self, topics: Sequence[str], handler: MessageHandler, *, group: str
    ) -> Subscription:
        """Consume ``topics`` as ``group``; return once its partitions are assigned.

        Missing topics are created first. Messages published after this returns are
        seen by the group; a group that was here before resumes where it stopped.

        Raises:
            BackendUnavailableError: Kafka is unreachable or assigns nothing in time.
        """
        names = [str(t) for t in topics]
        if self._closed:
            raise BackendUnavailableError(f"the Kafka event bus for {self.where} is closed")
        self._admin.ensure(names)
        sub = KafkaSubscription(
            self.settings,
            names,
            handler,
            group=group,
            close_timeout=self._close_timeout,
            commit_interval=self._commit_interval,
            dead_letter=self._send_dead_letter if self.dead_letter else None,
            extra=self._consumer_options,
        )
        sub.start(self._assign_timeout)
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if not s.closed]
            self._subscriptions.append(sub)
        return sub

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the missing ones of ``topics`` (configured partitions and replicas)."""
        self._admin.ensure(topics)

    def ping(self) -> bool:
        """True when a broker answers a metadata request within 2 s."""
        return self._admin.ping(2.0)

    def close(self) -> None:
        """Close remaining subscriptions, deliver queued messages; later publishes fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            sub.close()
        self._producer.close()
        self._admin.release()

    # -- internals -------------------------------------------------------------------

    def _send_dead_letter(self, msg: BusMessage, group: str, reason: str) -> None:
        """Copy a message whose handler failed to the dead-letter topic (best effort)."""
        headers = {
            **msg.headers,
            "skalds.source": msg.where(),
            "skalds.group": group,
            "skalds.error": reason[:1000],
        }
        try:
            self._producer.send(DEAD_LETTER_TOPIC, msg.key, msg.value, headers)
        except PublishError as exc:
            logger.warning("could not copy %s to %s: %s", msg.where(), DEAD_LETTER_TOPIC, exc)
