"""The Kafka event bus against the real broker: building it, topics, publishing, plugin."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

pytest.importorskip("skalds_kafka")

from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailableError, PublishError
from skalds.plugins import make_backends, make_plugin_manager
from skalds.ports import EventBus, Topic
from skalds_kafka import ConnectionSettings, KafkaEventBus
from skalds_kafka.proxy import KafkaAdmin, KafkaConfig
from tests.backends.kafka import (
    KAFKA_ADDRESS,
    KafkaInbox,
    make_kafka_bus,
    unique,
)
from tests.helpers import wait_for


@pytest.fixture
def admin(bus) -> KafkaAdmin:
    host, port = KAFKA_ADDRESS.split(":")
    return KafkaAdmin(KafkaConfig(host=host, port=int(port)))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_building_the_bus_creates_every_seed_topic_with_the_configured_partitions(bus, admin):
    topics = admin.list_topics()
    for seed in ("task.assign", "task.cancel", "task.update.attachment", "taskworker.update"):
        assert seed in topics
    for topic in Topic:
        assert admin.topic_partitions(topic.value) == SkaldConfig().kafka_topic_partitions


def test_ensure_topics_uses_the_partition_count_it_was_given(admin):
    bus = make_kafka_bus(topic_partitions=2, create_seed_topics=False)
    name = unique("test.partitions")
    try:
        bus.ensure_topics([name])
        bus.ensure_topics([name])  # idempotent
        assert admin.topic_partitions(name) == 2
    finally:
        bus.close()
        admin.delete_topics([name])


def test_an_unreachable_broker_fails_fast_with_one_line_naming_host_and_port(logs):
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        KafkaEventBus(ConnectionSettings(f"127.0.0.1:{port}"), connect_timeout=1.0)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "Kafka" in message
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    time.sleep(0.5)  # no reconnect spam left behind either
    assert logs.messages(logging.WARNING) == []


def test_the_plugin_answers_kafka_urls_and_only_those(bus):
    pm = make_plugin_manager()
    cfg = SkaldConfig(kafka_host="127.0.0.1", kafka_port=9092)
    assert cfg.resolved_event_bus_url() == "kafka://127.0.0.1:9092"
    backends = make_backends(pm, cfg)
    try:
        assert isinstance(backends.event_bus, KafkaEventBus)
        assert backends.event_bus.ping()
    finally:
        backends.close()
    other = SkaldConfig(event_bus_url="memory://")
    assert not isinstance(
        pm.hook.skalds_make_event_bus(url="memory://", config=other), KafkaEventBus
    )


def test_a_new_group_starts_after_what_was_published_before_it_subscribed(bus):
    topic = unique("test.start")
    bus.ensure_topics([topic])
    for i in range(3):
        bus.publish(topic, f"old-{i}", "old")
    inbox = KafkaInbox()
    sub = bus.subscribe([topic], inbox, group=unique("group"))
    try:
        bus.publish(topic, "new", "new")  # right after subscribe returned
        wait_for(lambda: inbox.values(), timeout=10)
        time.sleep(0.3)
        assert inbox.values() == [b"new"]
    finally:
        sub.close()


def test_publish_from_many_threads_delivers_everything_in_order_per_key(bus):
    topic = unique("test.threads")
    bus.ensure_topics([topic])
    inbox = KafkaInbox()
    sub = bus.subscribe([topic], inbox, group=unique("group"))
    errors: list[BaseException] = []

    def publisher(n: int) -> None:
        try:
            for i in range(20):
                bus.publish(topic, f"task-{n}", f"{n}:{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        wait_for(lambda: len(inbox.values()) == 160, timeout=15)
        per_key: dict[str, list[int]] = defaultdict(list)
        for m in inbox.messages:
            n, i = m.value.decode().split(":")
            assert m.key == f"task-{n}"
            per_key[n].append(int(i))
        assert all(seq == list(range(20)) for seq in per_key.values())
    finally:
        sub.close()


def test_an_oversized_message_says_its_size_and_is_not_sent(bus):
    topic = unique("test.big")
    bus.ensure_topics([topic])
    with pytest.raises(PublishError, match=r"is 2000000 bytes, over the 1000000-byte limit"):
        bus.publish(topic, "k", b"x" * 2_000_000)


@pytest.fixture
def lenient_bus() -> Iterator[EventBus]:
    """A bus whose client sends messages up to 4 MB: the broker (1 MB) refuses the big ones."""
    bus = make_kafka_bus(
        create_seed_topics=False, producer_options={"message.max.bytes": 4_000_000}
    )
    yield bus
    bus.close()


def test_a_message_the_broker_refuses_as_too_large_raises(lenient_bus):
    """Under the client's limit but over the topic's: the broker's refusal reaches the caller."""
    topic = unique("test.broker-big")
    lenient_bus.ensure_topics([topic])
    with pytest.raises(PublishError, match=r"too large|size|bytes"):
        lenient_bus.publish(topic, "k", b"x" * 1_500_000)


def test_ping_and_publish_after_close(bus):
    assert bus.ping()
    bus.close()
    with pytest.raises(PublishError, match="closed"):
        bus.publish("task.assign", "k", "v")


def test_publish_nowait_logs_a_message_the_broker_refuses(lenient_bus, logs):
    """Queued at once, refused by the broker later: the delivery report is logged."""
    topic = unique("test.nowait-big")
    lenient_bus.ensure_topics([topic])
    started = time.monotonic()
    lenient_bus.publish_nowait(topic, "task-refused", b"x" * 1_500_000)
    assert time.monotonic() - started < 1.0  # it did not wait for the broker
    wait_for(
        lambda: any(
            "task-refused" in m and topic in m and "lost" in m
            for m in logs.messages(logging.WARNING)
        ),
        timeout=10,
    )


def test_messages_published_nowait_are_delivered_before_close_returns(bus):
    from confluent_kafka import Consumer, TopicPartition

    topic = unique("test.nowait-close")
    bus.ensure_topics([topic])
    for i in range(20):
        bus.publish_nowait(topic, f"task-{i}", str(i))
    bus.close()  # flushes what is queued
    consumer = Consumer({"bootstrap.servers": KAFKA_ADDRESS, "group.id": unique("group")})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        assert total == 20
    finally:
        consumer.close()


def test_the_producer_batching_wait_comes_from_kafka_linger_ms(bus, monkeypatch):
    pm = make_plugin_manager()
    assert SkaldConfig().kafka_linger_ms == 5  # librdkafka's own default
    monkeypatch.setenv("KAFKA_LINGER_MS", "0")
    cfg = SkaldConfig(kafka_host="127.0.0.1", kafka_port=9092)
    backends = make_backends(pm, cfg)
    try:
        made = backends.event_bus
        assert isinstance(made, KafkaEventBus)
        assert made._producer._conf["linger.ms"] == 0
        # and events flow with it
        topic = unique("test.linger")
        made.ensure_topics([topic])
        inbox = KafkaInbox()
        sub = made.subscribe([topic], inbox, group=unique("group"))
        try:
            made.publish_nowait(topic, "k", "v")
            wait_for(lambda: inbox.values() == [b"v"], timeout=20)
        finally:
            sub.close()
    finally:
        backends.close()
    monkeypatch.setenv("KAFKA_LINGER_MS", "-1")
    with pytest.raises(ValueError, match="kafka_linger_ms"):
        SkaldConfig()
