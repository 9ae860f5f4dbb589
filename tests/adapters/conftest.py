"""Fixtures shared by the adapter tests: the Kafka bus and the ``skalds`` log records.

The fixtures themselves live in ``tests/backends/kafka.py``; this makes them available
to every module here under the short names the tests use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skalds.ports import EventBus
from tests.backends.kafka import (
    SkaldsLogRecords,
    kafka_event_bus,  # noqa: F401 - a fixture, used by ``bus``
    skalds_log_records,
)


@pytest.fixture
def bus(kafka_event_bus: EventBus) -> EventBus:  # noqa: F811 - the imported fixture
    """A Kafka bus on the test broker (skips locally, fails in CI, without one)."""
    return kafka_event_bus


@pytest.fixture
def logs() -> Iterator[SkaldsLogRecords]:
    """What the ``skalds`` logger emits during the test."""
    with skalds_log_records() as records:
        yield records
