"""The seed API of ``skalds.proxy.kafka``: KafkaConfig, KafkaTopic, KafkaProxy, KafkaAdmin.

Scripts use it to send task events the way the product documents show::

    kafka_proxy = KafkaProxy(KafkaConfig(host="127.0.0.1", port=9092))
    kafka_proxy.produce(KafkaTopic.TASK_ASSIGN, key=task.id, value=event.model_dump_json())

``produce`` returns only once Kafka confirmed the message, so a script may exit right
after it. The same topics, partition counts and delivery guarantees as the event bus.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field

from skalds.errors import BackendUnavailableError, PublishError
from skalds.ports.event_bus import Topic
from skalds_kafka._admin import TopicAdmin
from skalds_kafka._producer import ConfirmingProducer
from skalds_kafka._settings import ConnectionSettings

__all__ = ["KafkaAdmin", "KafkaConfig", "KafkaProxy", "KafkaTopic"]

KafkaTopic = Topic
"""The shared topics (``KafkaTopic.TASK_ASSIGN == "task.assign"``); key = task id."""


class KafkaConfig(BaseModel):
    """How to reach Kafka; the fields mirror ``SkaldConfig``'s ``kafka_*`` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="localhost", description="broker host, or host:port,host:port")
    port: int = Field(default=9092, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    security_protocol: str | None = Field(
        default=None, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: str | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    ssl_ca_file: str | None = None
    topic_partitions: int = Field(default=3, ge=1, description="partitions of created topics")
    replication_factor: int = Field(default=1, ge=1, description="replicas of created topics")
    delivery_timeout: float = Field(
        default=10.0, gt=0, description="seconds produce() waits for Kafka's confirmation"
    )

    @property
    def bootstrap_servers(self) -> str:
        """``host:port``, or ``host`` itself when it already lists host:port pairs."""
        if "," in self.host or self.host.count(":") == 1:
            return self.host
        return f"{self.host}:{self.port}"

    def connection(self) -> ConnectionSettings:
        """The connection settings these fields describe."""
        return ConnectionSettings(
            bootstrap=self.bootstrap_servers,
            username=self.username,
            password=self.password,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            ssl_ca_file=self.ssl_ca_file,
        )


class KafkaAdmin:
    """Create, delete and list topics (created with the config's partitions/replicas)."""

    def __init__(self, kafka_config: KafkaConfig | None = None) -> None:
        self.config = kafka_config or KafkaConfig()
        self._admin = TopicAdmin(
            self.config.connection(),
            partitions=self.config.topic_partitions,
            replication_factor=self.config.replication_factor,
            timeout=self.config.delivery_timeout,
        )

    def create_topics(
        self,
        topics: Sequence[str],
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        """Create ``topics``; existing ones are left as they are.

        Raises:
            BackendUnavailableError: Kafka is not reachable.
            ConfigError: Kafka refused a topic (name, replication factor...).
        """
        self._admin.create(
            [str(t) for t in topics], partitions=partitions, replication_factor=replication_factor
        )

    def ensure_topics(self, topics: Sequence[str] | None = None) -> list[str]:
        """Create the missing ones of ``topics`` (default: the seed topics); return them."""
        names = [t.value for t in KafkaTopic] if topics is None else [str(t) for t in topics]
        return self._admin.ensure(names)

    def delete_topics(self, topics: Sequence[str]) -> None:
        """Delete ``topics``; missing ones are ignored."""
        self._admin.delete([str(t) for t in topics])

    def list_topics(self) -> list[str]:
        """Names of the topics in the cluster (without Kafka's internal ones)."""
        return self._admin.list_topics()

    def topic_partitions(self, topic: str) -> int:
        """Number of partitions of ``topic`` (0 when it does not exist)."""
        meta = self._admin.metadata().topics.get(str(topic))
        return 0 if meta is None else len(meta.partitions)

    def ping(self, timeout: float = 2.0) -> bool:
        """True when a broker answers within ``timeout`` seconds."""
        return self._admin.ping(timeout)

    def close(self) -> None:
        """Release the connection (a later call opens a new one)."""
        self._admin.release()


class KafkaProxy:
    """Send events to Kafka; ``produce`` blocks until Kafka confirmed the message.

    Connecting is lazy: building a proxy never fails because Kafka is down; the
    first ``produce`` says so (``PublishError`` naming host:port).
    """

    def __init__(self, kafka_config: KafkaConfig | None = None) -> None:
        self.config = kafka_config or KafkaConfig()
        settings = self.config.connection()
        self._admin = TopicAdmin(
            settings,
            partitions=self.config.topic_partitions,
            replication_factor=self.config.replication_factor,
            timeout=self.config.delivery_timeout,
        )
        self._producer = ConfirmingProducer(
            settings,
            timeout=self.config.delivery_timeout,
            client="proxy producer",
            quiet_until_connected=True,
        )

    def produce(self, topic_name: str, key: str | None, value: str | bytes) -> None:
        """Send ``value`` to ``topic_name`` with ``key`` (the task id); wait for the ack.

        A missing topic is created first with the configured partitions, rather than
        by the broker's auto-creation with its defaults.

        Raises:
            PublishError: Kafka did not confirm the message (down, too large...).
        """
        topic = str(topic_name)
        try:
            self._admin.ensure([topic])
        except BackendUnavailableError as exc:
            raise PublishError(f"message for {topic} not sent: {exc}") from None
        self._producer.send(topic, key, value)

    def close(self) -> None:
        """Release the connection (safe to call twice)."""
        self._producer.close()
        self._admin.release()

    def __enter__(self) -> KafkaProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
