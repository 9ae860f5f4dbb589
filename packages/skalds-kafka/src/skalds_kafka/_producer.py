"""A thread-safe producer whose ``send`` returns only once Kafka confirmed the message.

librdkafka's ``produce()`` only queues a message; delivery is reported later through a
callback served by ``poll()``. Skalds needs "published or an exception" where a caller
acts on the outcome, so ``send`` waits for that report. One poller thread serves the
reports of every sending thread, so a sender just waits on its own event: no polling
loop in the caller, and any number of threads may send. ``send_nowait`` is for hints
the store backs up: it returns once the message is queued, and only a failed delivery
is reported (logged) by the poller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from skalds.errors import PublishError
from skalds.utils.logging import logger
from skalds_kafka._errors import LIBRDKAFKA_LOGGER, ErrorReporter
from skalds_kafka._settings import ConnectionSettings

__all__ = ["DEFAULT_LINGER_MS", "ConfirmingProducer"]

_POLL_SECONDS = 0.2
DEFAULT_LINGER_MS = 5
"""librdkafka's own default: a message waits up to 5 ms for others to share its request.

Under a flood of tasks (three or four events each) fewer, fuller produce requests go
out, and a request costs the broker and both clients more than its bytes do. Against a
1 ms wait, one A/B set of one-shot floods gave 10-17 % more tasks per second and ~20 %
less broker CPU; two later sets, on a machine drifting in speed, were inconclusive. A
lone message is up to 5 ms later. ``KAFKA_LINGER_MS`` sets it (0: send at once).
"""
_DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes default


class _Delivery:
    """The delivery report of one message, waited for by the thread that sent it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        self.error = err
        self.done.set()


class _Report:
    """The delivery report of a message nobody waits for: logged when it failed."""

    __slots__ = ("key", "producer", "topic")

    def __init__(self, producer: ConfirmingProducer, topic: str, key: str | None) -> None:
        self.producer = producer
        self.topic = topic
        self.key = key

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.producer._reporter.recovered()
            return
        size = len(msg.value() or b"")
        logger.warning(
            "%s (key %s); it is lost", self.producer._failure(self.topic, size, err), self.key
        )


class _ErrorHook:
    """The ``error_cb`` of one librdkafka producer: report, and remember a fatal error.

    A separate object, so a client's callbacks never point back at its owner: no
    reference cycle keeps a librdkafka handle alive until some later garbage
    collection, which may run in a forked child where its threads do not exist.
    """

    def __init__(self, reporter: ErrorReporter) -> None:
        self.reporter = reporter
        self.fatal = False

    def __call__(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = True
        self.reporter(err)


class ConfirmingProducer:
    """Idempotent producer (acks=all) with a blocking, confirming ``send``.

    The librdkafka client and its poller thread start at the first ``send``, so
    building one starts no thread (backends handed to a node are built before it
    forks its fork server, and a fork should copy no running client).

    Args:
        settings: where Kafka is and how to authenticate.
        timeout: seconds a message may take to be confirmed (librdkafka's
            ``message.timeout.ms``); after that ``send`` raises ``PublishError``.
        client: what this producer is for, in log lines.
        quiet_until_connected: see :class:`~skalds_kafka._errors.ErrorReporter`.
        extra: more librdkafka properties (tests, tuning).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        timeout: float = 10.0,
        client: str = "producer",
        quiet_until_connected: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.where = settings.bootstrap
        self.timeout = timeout
        self.client = client
        self._reporter = ErrorReporter(
            client, settings.bootstrap, quiet_until_connected=quiet_until_connected
        )
        self._conf: dict[str, Any] = {
            **settings.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": max(1, int(timeout * 1000)),
            "linger.ms": DEFAULT_LINGER_MS,
            "reconnect.backoff.max.ms": 2000,
            "log.connection.close": False,
            "logger": LIBRDKAFKA_LOGGER,
            **(extra or {}),
        }
        self.max_bytes = int(self._conf.get("message.max.bytes", _DEFAULT_MAX_BYTES))
        self._lock = threading.Lock()
        self._closed = False
        self._producer: Producer | None = None
        self._hook = _ErrorHook(self._reporter)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def send(
        self,
        topic: str,
        key: str | None,
        value: bytes | str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Produce one message and wait for its delivery report (blocks the caller).

        Raises:
            PublishError: the message is too large, the local queue is full, the
                producer is closed, or Kafka did not confirm it within ``timeout``.
        """
        delivery = _Delivery()
        size = self._produce(topic, key, value, headers, delivery)
        if not delivery.done.wait(self.timeout + 2.0):
            raise PublishError(self._failure(topic, size, None))
        if delivery.error is not None:
            raise PublishError(self._failure(topic, size, delivery.error))
        self._reporter.recovered()

    def send_nowait(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Produce one message and return; its delivery report is only logged if it failed.

        The poller thread serves the report, so the caller never waits on the broker;
        messages produced meanwhile travel in the same requests (``linger.ms``).

        Raises:
            PublishError: the message was not queued (too large, queue full, closed).
        """
        self._produce(topic, key, value, None, _Report(self, topic, key))

    def _produce(
        self,
        topic: str,
        key: str | None,
        value: bytes | str,
        headers: dict[str, str] | None,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> int:
        """Queue one message in librdkafka; return its size.

        Raises:
            PublishError: the message is too large, the local queue is full, or the
                producer is closed.
        """
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) > self.max_bytes:
            raise PublishError(
                f"message for {topic} is {len(data)} bytes, over the {self.max_bytes}-byte "
                "limit (message.max.bytes); it was not sent"
            )
        producer = self._current()
        try:
            producer.produce(
                topic,
                value=data,
                key=key.encode() if key is not None else None,
                on_delivery=on_delivery,
                headers=list(headers.items()) if headers else None,
            )
        except BufferError:
            raise PublishError(
                f"Kafka producer queue for {self.where} is full; message for {topic} not sent"
            ) from None
        except KafkaException as exc:
            raise PublishError(self._failure(topic, len(data), exc.args[0])) from None
        except RuntimeError as exc:  # closed by another thread meanwhile
            raise PublishError(f"the Kafka producer for {self.where}: {exc}") from None
        return len(data)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout`` s), stop the poller, destroy the client."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer = self._producer
        if producer is None:
            return
        left = producer.flush(timeout)
        self._stop.set()
        poller = self._poller
        if poller is not None and threading.current_thread() is not poller:
            poller.join(timeout=2 * _POLL_SECONDS + 1)
        with self._lock:
            self._producer = None
        producer.close()
        if left:
            logger.warning(
                "Kafka producer closed with %d message(s) to %s unconfirmed", left, self.where
            )

    # -- internals -------------------------------------------------------------------

    def _current(self) -> Producer:
        """The client to use: created on first use, replaced after a fatal error."""
        with self._lock:
            if self._closed:
                raise PublishError(f"the Kafka producer for {self.where} is closed")
            if self._producer is not None and self._hook.fatal:
                # The idempotence state is lost: only a new client can send again.
                logger.warning(
                    "recreating the Kafka producer for %s after a fatal error", self.where
                )
                old, self._producer = self._producer, None
                old.purge()
                old.poll(0)  # fails the purged messages' senders at once
                old.close()
            if self._producer is None:
                self._hook = _ErrorHook(self._reporter)
                self._producer = Producer({**self._conf, "error_cb": self._hook})
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll_loop, name=f"skalds-kafka-{self.client}", daemon=True
                )
                self._poller.start()
            return self._producer

    def _poll_loop(self) -> None:
        """Serve delivery reports (and errors) for every sender, until closed."""
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                self._stop.wait(_POLL_SECONDS)
                continue
            try:
                producer.poll(_POLL_SECONDS)
            except RuntimeError:  # that client was just closed (replaced or shut down)
                continue
            except Exception:  # a delivery callback never raises; stay alive regardless
                logger.exception("Kafka producer poll failed")
                self._stop.wait(_POLL_SECONDS)

    def _failure(self, topic: str, size: int, err: KafkaError | None) -> str:
        if err is None:
            return (
                f"Kafka at {self.where} did not confirm the message for {topic} "
                f"within {self.timeout:g} s{self._last_error()}"
            )
        if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            return f"message for {topic} is {size} bytes, too large for Kafka ({err.str()})"
        if err.code() == KafkaError._MSG_TIMED_OUT:
            return (
                f"Kafka at {self.where} did not confirm the message for {topic} "
                f"within {self.timeout:g} s{self._last_error()}"
            )
        return f"Kafka at {self.where} refused the message for {topic}: {err.str()}"

    def _last_error(self) -> str:
        last = self._reporter.last_error
        return f" (last error: {last})" if last else ""
