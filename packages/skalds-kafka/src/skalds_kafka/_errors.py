"""Client errors, logged once per outage instead of once per reconnect attempt.

librdkafka retries a dead broker every few hundred milliseconds and reports every
attempt, both as a log line and through ``error_cb``. A node would print thousands
of identical lines during a restart of Kafka. Here the library's own log lines of
level ERROR and above are dropped (the same errors arrive through ``error_cb``), and
:class:`ErrorReporter` logs each kind of error once until the client works again.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError

from skalds.utils.logging import logger

__all__ = ["LIBRDKAFKA_LOGGER", "ErrorReporter"]


class _BelowError(logging.Filter):
    """Keep librdkafka's warnings (config mistakes); its errors come via ``error_cb``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


LIBRDKAFKA_LOGGER = logging.getLogger("skalds.kafka.librdkafka")
if not any(isinstance(f, _BelowError) for f in LIBRDKAFKA_LOGGER.filters):
    LIBRDKAFKA_LOGGER.addFilter(_BelowError())

# Errors that mean "cannot reach the cluster right now"; the client keeps retrying.
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
}
_UNREACHABLE_KIND = -1_000_000  # one log line for all of them


class ErrorReporter:
    """The ``error_cb`` of one client: one log line per kind of error and outage.

    Args:
        client: what the client is, for the log line (``"consumer of group g"``).
        where: the bootstrap servers.
        quiet_until_connected: log errors before the first success at DEBUG only,
            for clients whose caller turns the failure into one clear exception.
    """

    def __init__(self, client: str, where: str, *, quiet_until_connected: bool = False) -> None:
        self.client = client
        self.where = where
        self._quiet = quiet_until_connected
        self._seen: set[int] = set()
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def unreachable(self) -> bool:
        """True while the cluster was reported unreachable and nothing worked since."""
        with self._lock:
            return _UNREACHABLE_KIND in self._seen

    def __call__(self, err: KafkaError) -> None:
        """Record ``err`` (librdkafka calls this from ``poll()``)."""
        unreachable = err.code() in _UNREACHABLE
        kind = _UNREACHABLE_KIND if unreachable else err.code()
        with self._lock:
            self.last_error = err.str()
            first = kind not in self._seen
            self._seen.add(kind)
            quiet = self._quiet
        if err.fatal():
            logger.error("Kafka %s at %s: fatal error: %s", self.client, self.where, err.str())
        elif not first:
            return
        elif quiet:
            logger.debug("Kafka %s at %s: %s", self.client, self.where, err.str())
        elif unreachable:
            logger.warning(
                "Kafka %s: cannot reach %s (%s); retrying until it is back",
                self.client,
                self.where,
                err.str(),
            )
        else:
            logger.warning("Kafka %s at %s: %s", self.client, self.where, err.str())

    def recovered(self) -> None:
        """The client just worked: log the end of an outage, re-arm the error lines."""
        with self._lock:
            was_down = _UNREACHABLE_KIND in self._seen and not self._quiet
            self._seen.clear()
            self._quiet = False
            self.last_error = None
        if was_down:
            logger.info("Kafka %s: %s is reachable again", self.client, self.where)
