"""Topic management through the AdminClient: create what is missing, list, delete, ping.

Topics are created explicitly, with the configured partition count and replication
factor, before anything produces to or subscribes them: a broker's auto-creation
would make them with its own defaults (often one partition), and a consumer group
joining a topic that does not exist yet gets no partitions of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from skalds.errors import BackendUnavailableError, ConfigError
from skalds.utils.logging import logger
from skalds_kafka._errors import LIBRDKAFKA_LOGGER, ErrorReporter
from skalds_kafka._settings import ConnectionSettings

if TYPE_CHECKING:
    from confluent_kafka.admin._metadata import ClusterMetadata

__all__ = ["TopicAdmin"]

_VISIBLE_POLL_SECONDS = 0.05
_CONFIG_ERRORS = {
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_CONFIG,
}


class TopicAdmin:
    """Create, list and delete topics; remember the ones known to exist.

    Args:
        settings: where Kafka is and how to authenticate.
        partitions: partitions of a topic this admin creates (``KAFKA_TOPIC_PARTITIONS``).
        replication_factor: its replicas (``KAFKA_REPLICATION_FACTOR``).
        timeout: seconds any single admin request may take.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        partitions: int = 3,
        replication_factor: int = 1,
        timeout: float = 10.0,
    ) -> None:
        if partitions < 1 or replication_factor < 1:
            raise ConfigError("topic partitions and replication factor must be at least 1")
        self.where = settings.bootstrap
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.timeout = timeout
        self._reporter = ErrorReporter("admin client", self.where, quiet_until_connected=True)
        self._conf: dict[str, Any] = {
            **settings.client_config(),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "reconnect.backoff.max.ms": 2000,
            "log.connection.close": False,
            "error_cb": self._reporter,
            "logger": LIBRDKAFKA_LOGGER,
        }
        self._client: AdminClient | None = None
        self._known: set[str] = set()
        self._lock = threading.Lock()

    @property
    def _admin(self) -> AdminClient:
        """The librdkafka admin client, created on first use (and after ``release``)."""
        with self._lock:
            if self._client is None:
                self._client = AdminClient(self._conf)
            return self._client

    def release(self) -> None:
        """Destroy the client and its threads now; the next call makes a new one.

        The bus releases it once built, so a node that forks after building its
        backends forks no running Kafka client.
        """
        with self._lock:
            client, self._client = self._client, None
        del client  # its last reference: librdkafka destroys the handle here

    def metadata(self, timeout: float | None = None) -> ClusterMetadata:
        """Fetch cluster metadata (brokers and topics).

        Raises:
            BackendUnavailableError: no broker answered within ``timeout`` seconds.
        """
        wait = self.timeout if timeout is None else timeout
        try:
            md = self._admin.list_topics(timeout=wait)
        except KafkaException as exc:
            self._admin.poll(0)  # serve error_cb: it has the reason (refused, DNS, TLS...)
            raise BackendUnavailableError(self._unreachable(exc.args[0], wait)) from None
        self._admin.poll(0)  # serve error_cb now, so the reporter's state is current
        self._reporter.recovered()
        return md

    def ping(self, timeout: float = 2.0) -> bool:
        """True when the cluster describes itself within ``timeout`` seconds.

        A ``DescribeCluster`` request (brokers and controller only), not a metadata
        request: that one returns every topic and partition, which on a cluster with
        a few thousand partitions takes tens of milliseconds of CPU to turn into
        Python objects, and nodes ping every two seconds.
        """
        admin = self._admin
        try:
            described = admin.describe_cluster(request_timeout=timeout).result(timeout + 1.0)
        except Exception:  # KafkaException, or the future's own TimeoutError
            admin.poll(0)  # serve error_cb: it has the reason (refused, DNS, TLS...)
            return False
        admin.poll(0)
        self._reporter.recovered()
        return bool(described.nodes)

    def list_topics(self) -> list[str]:
        """Names of the topics in the cluster, without Kafka's internal ones."""
        return sorted(t for t in self.metadata().topics if not t.startswith("__"))

    def ensure(self, topics: Iterable[str]) -> list[str]:
        """Create those of ``topics`` that do not exist; return the ones created.

        Returns once every topic is visible with a leader for each partition, so a
        consumer group that subscribes right after gets all of them assigned.

        Raises:
            BackendUnavailableError: Kafka is not reachable.
            ConfigError: Kafka refused a topic (bad name, replication factor larger
                than the number of brokers, ...).
        """
        wanted = sorted({str(t) for t in topics})
        with self._lock:
            wanted = [t for t in wanted if t not in self._known]
        if not wanted:
            return []
        existing = self.metadata().topics
        missing = [t for t in wanted if t not in existing]
        for name in wanted:
            have = existing.get(name)
            if have is not None and len(have.partitions) < self.partitions:
                logger.info(
                    "Kafka topic %s has %d partition(s), fewer than the configured %d; "
                    "left as it is (adding partitions would move keys)",
                    name,
                    len(have.partitions),
                    self.partitions,
                )
        if missing:
            self.create(missing)
        self._wait_visible(wanted)
        with self._lock:
            self._known.update(wanted)
        return missing

    def create(
        self,
        topics: Sequence[str],
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        """Create ``topics``; one that already exists is not an error.

        Raises:
            BackendUnavailableError: Kafka is not reachable.
            ConfigError: Kafka refused a topic.
        """
        new = [
            NewTopic(
                str(t),
                num_partitions=partitions or self.partitions,
                replication_factor=replication_factor or self.replication_factor,
            )
            for t in topics
        ]
        futures = self._admin.create_topics(
            new, request_timeout=self.timeout, operation_timeout=self.timeout
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self.timeout + 5)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if err.code() in _CONFIG_ERRORS:
                    raise ConfigError(
                        f"Kafka refused to create topic {name!r}: {err.str()}"
                    ) from None
                raise BackendUnavailableError(
                    f"Kafka at {self.where} could not create topic {name!r}: {err.str()}"
                ) from None
            except TimeoutError:
                raise BackendUnavailableError(
                    f"Kafka at {self.where} did not create topic {name!r} within {self.timeout:g} s"
                ) from None
            logger.info(
                "created Kafka topic %s (%d partitions, replication factor %d)",
                name,
                partitions or self.partitions,
                replication_factor or self.replication_factor,
            )

    def delete(self, topics: Sequence[str]) -> None:
        """Delete ``topics``; one that does not exist is not an error.

        Raises:
            BackendUnavailableError: Kafka is not reachable.
        """
        names = [str(t) for t in topics]
        if not names:
            return
        with self._lock:
            self._known.difference_update(names)
        futures = self._admin.delete_topics(
            names, request_timeout=self.timeout, operation_timeout=self.timeout
        )
        for future in futures.values():
            try:
                future.result(timeout=self.timeout + 5)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BackendUnavailableError(
                        f"Kafka at {self.where} could not delete topic(s): {err.str()}"
                    ) from None

    def _wait_visible(self, topics: Sequence[str]) -> None:
        """Wait (bounded) until metadata shows each topic with a leader per partition."""
        deadline = time.monotonic() + self.timeout
        while True:
            md = self.metadata()
            pending = [t for t in topics if not _ready(md, t)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"Kafka topic(s) {', '.join(pending)} at {self.where} have no leader "
                    f"after {self.timeout:g} s"
                )
            time.sleep(_VISIBLE_POLL_SECONDS)

    def _unreachable(self, err: KafkaError, timeout: float) -> str:
        detail = self._reporter.last_error or err.str()
        return f"Kafka is not reachable at {self.where} within {timeout:g} s ({detail})"


def _ready(md: ClusterMetadata, topic: str) -> bool:
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in meta.partitions.values())
