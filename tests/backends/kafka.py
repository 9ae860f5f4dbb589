"""Fixtures for the Kafka adapter: the event bus against the real broker on 127.0.0.1:9092.

Topics and consumer groups are random per test (the broker is shared); the bus
creates the seed topics, which are shared on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skalds.ports import BusMessage, EventBus
from tests.conftest import require_service

# Only the contract fixture is star-imported by tests/contract/conftest.py; the
# adapter tests import the helpers below by name.
__all__ = ["BACKEND_NAMES", "kafka_event_bus"]

BACKEND_NAMES: list[tuple[str, str]] = [("event_bus", "kafka")]

KAFKA_ADDRESS = "127.0.0.1:9092"


def kafka_port_open(timeout: float = 1.0) -> bool:
    host, port = KAFKA_ADDRESS.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def make_kafka_bus(**options: Any) -> EventBus:
    """A bus on the test broker with test-friendly timeouts; skips (fails in CI) without it."""
    pytest.importorskip("skalds_kafka")
    from skalds_kafka import ConnectionSettings, KafkaEventBus

    require_service("Kafka", kafka_port_open(), KAFKA_ADDRESS)
    settings: dict[str, Any] = {
        "publish_timeout": 5.0,
        "connect_timeout": 3.0,
        "assign_timeout": 20.0,
        "close_timeout": 5.0,
        **options,
    }
    return KafkaEventBus(ConnectionSettings(KAFKA_ADDRESS), **settings)


@pytest.fixture
def kafka_event_bus() -> Iterator[EventBus]:
    bus = make_kafka_bus()
    yield bus
    bus.close()


class KafkaInbox:
    """Collects what a subscription's handler receives (thread-safe)."""

    def __init__(self) -> None:
        self.messages: list[BusMessage] = []
        self._lock = threading.Lock()

    def __call__(self, msg: BusMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def values(self) -> list[bytes]:
        with self._lock:
            return [m.value for m in self.messages]


class SkaldsLogRecords(logging.Handler):
    """Records of the ``skalds`` logger (which may not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in list(self.records) if r.levelno >= level]


@contextlib.contextmanager
def skalds_log_records() -> Iterator[SkaldsLogRecords]:
    """Collect everything the ``skalds`` logger emits inside the block."""
    log = logging.getLogger("skalds")
    handler = SkaldsLogRecords()
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def unique(prefix: str) -> str:
    """A name nobody else on the shared broker uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
