"""A running subscription survives a Kafka restart: publish fails meanwhile, then it resumes.

Stops the Kafka of ``scripts/services`` (127.0.0.1:9092, this adapter's own service)
and starts it again with ``scripts/services up kafka``; topics and committed offsets
are kept on disk across the restart, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("skalds_kafka")

from skalds.errors import PublishError
from skalds.ports import EventBus
from tests.backends.kafka import (
    KAFKA_ADDRESS,
    KafkaInbox,
    make_kafka_bus,
    unique,
)
from tests.conftest import require_service
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = Path(os.environ.get("SKALDS_SERVICES_DIR", "/tmp/skalds-services"))
PID_FILE = SERVICES_DIR / "run" / "kafka.pid"

pytestmark = pytest.mark.slow


def stop_kafka() -> None:
    """SIGTERM the service's broker (a controlled shutdown) and wait until it is gone."""
    proc = psutil.Process(int(PID_FILE.read_text().strip()))
    assert "kafka.Kafka" in " ".join(proc.cmdline()), "the pid file is not Kafka's"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(40)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_kafka() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up", "kafka"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, f"scripts/services up kafka: {result.stdout}{result.stderr}"


def publish_when_possible(bus: EventBus, topic: str, value: str, timeout: float = 30) -> None:
    """Right after the restart, leaders may still be elected: retry until it is confirmed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            bus.publish(topic, "task-outage", value)
            return
        except PublishError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def bus() -> Iterator[EventBus]:
    """Instead of the shared ``bus``: short timeouts, and Kafka is never left down."""
    require_service(
        "Kafka of scripts/services",
        KAFKA_ADDRESS == "127.0.0.1:9092" and PID_FILE.exists(),
        str(PID_FILE),
    )
    bus = make_kafka_bus(publish_timeout=2.0, create_seed_topics=False)
    try:
        yield bus
    finally:
        with contextlib.suppress(Exception):
            bus.close()
        if not PID_FILE.exists() or not psutil.pid_exists(int(PID_FILE.read_text().strip())):
            start_kafka()  # never leave the shared service down


def test_the_same_subscription_resumes_after_kafka_restarts(bus, logs):
    topic = unique("test.outage")
    group = unique("group")
    bus.ensure_topics([topic])
    inbox = KafkaInbox()
    sub = bus.subscribe([topic], inbox, group=group)
    try:
        bus.publish(topic, "task-outage", "before")
        wait_for(lambda: inbox.values() == [b"before"])

        stop_kafka()
        started = time.monotonic()
        with pytest.raises(PublishError, match=r"127\.0\.0\.1:9092"):
            bus.publish(topic, "task-outage", "during")
        assert time.monotonic() - started < 6
        assert not bus.ping()
        time.sleep(2)  # the consumer keeps retrying meanwhile

        start_kafka()
        publish_when_possible(bus, topic, "after")
        wait_for(lambda: b"after" in inbox.values(), timeout=40)
        assert inbox.values()[0] == b"before"
        assert b"during" not in inbox.values()  # refused, so never delivered
    finally:
        sub.close()

    warnings = logs.messages(logging.WARNING)
    consumer_lines = [m for m in warnings if f"consumer of group {group}: cannot reach" in m]
    # Once per outage, not once per retry (librdkafka retries many times a second): a
    # broker that is up but not yet ready right after its restart may count once more.
    assert 1 <= len(consumer_lines) <= 2, warnings
    assert len([m for m in warnings if "producer: cannot reach" in m]) <= 1
