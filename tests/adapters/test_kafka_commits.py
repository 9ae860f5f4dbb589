"""Batched commits on the real broker: what was handled stays handled across close and rebalance.

Offsets are stored after handling and committed in the background; these tests use a
commit interval of a minute, so only the commits at close, at a rebalance and at
assignment can make them pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("skalds_kafka")

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from skalds.ports import BusMessage, EventBus
from skalds_kafka import ConnectionSettings, KafkaSubscription
from tests.backends.kafka import KAFKA_ADDRESS, KafkaInbox, make_kafka_bus, unique
from tests.helpers import wait_for

NEVER = 60.0  # seconds: no background commit happens during a test


@pytest.fixture
def slow_bus() -> Iterator[EventBus]:
    """A bus whose consumers never commit in the background during a test."""
    bus = make_kafka_bus(commit_interval=NEVER, create_seed_topics=False)
    yield bus
    bus.close()


def committed_and_ends(group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset and the end of each partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": KAFKA_ADDRESS, "group.id": group})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        return committed, ends
    finally:
        consumer.close()


class FailingInbox(KafkaInbox):
    """Collects every message, then raises on ``raise`` like a broken handler."""

    def __call__(self, msg: BusMessage) -> None:
        super().__call__(msg)
        if msg.value == b"raise":
            raise RuntimeError("handler failure on purpose")


def test_what_was_handled_is_committed_when_the_subscription_closes(slow_bus):
    topic, group = unique("test.close-commit"), unique("group")
    slow_bus.ensure_topics([topic])
    first = FailingInbox()
    sub = slow_bus.subscribe([topic], first, group=group)
    sent = [f"{k}:{i}" for k in range(6) for i in range(5)] + ["raise"]
    for value in sent:
        slow_bus.publish(topic, f"task-{value.split(':')[0]}", value)
    wait_for(lambda: len(first.values()) == len(sent), timeout=15)
    sub.close()

    committed, ends = committed_and_ends(group, topic)
    assert committed == ends  # the failed message too: it is skipped, not retried
    again = KafkaInbox()
    sub = slow_bus.subscribe([topic], again, group=group)
    try:
        slow_bus.publish(topic, "task-0", "after")
        wait_for(lambda: again.values(), timeout=10)
        time.sleep(0.3)
        assert again.values() == [b"after"]  # nothing handled before comes again
    finally:
        sub.close()


def test_a_rebalance_commits_what_the_first_member_handled(slow_bus):
    topic, group = unique("test.rebalance"), unique("group")
    slow_bus.ensure_topics([topic])
    first, second = KafkaInbox(), KafkaInbox()
    subs = [slow_bus.subscribe([topic], first, group=group)]
    try:
        for i in range(30):
            slow_bus.publish(topic, f"task-{i % 6}", str(i))
        wait_for(lambda: len(first.values()) == 30, timeout=15)

        subs.append(slow_bus.subscribe([topic], second, group=group))  # takes partitions away
        committed, ends = committed_and_ends(group, topic)
        assert committed == ends
        time.sleep(0.5)
        assert second.values() == []  # the new member resumed after what was handled
    finally:
        for sub in subs:
            sub.close()


def test_a_group_that_handled_nothing_comes_back_where_it_started(slow_bus):
    """Its start is committed at the first assignment, not with a handled message."""
    topic, group = unique("test.start-commit"), unique("group")
    slow_bus.ensure_topics([topic])
    for i in range(5):
        slow_bus.publish(topic, f"task-{i}", "old")
    slow_bus.subscribe([topic], KafkaInbox(), group=group).close()
    away = {f"away-{i}".encode() for i in range(5)}
    for value in sorted(away):
        slow_bus.publish(topic, f"task-{value.decode()[-1]}", value)

    again = KafkaInbox()
    sub = slow_bus.subscribe([topic], again, group=group)
    try:
        wait_for(lambda: len(again.values()) >= len(away), timeout=10)
        time.sleep(0.3)
        assert sorted(again.values()) == sorted(away)  # neither lost nor the old ones
    finally:
        sub.close()


class UnreadableMarked(KafkaSubscription):
    """Treats a message whose value is ``unreadable`` as one the client could not read."""

    def _handle(self, msg: Message) -> None:
        if msg.value() == b"unreadable":
            self._on_message_error(msg, KafkaError(KafkaError._BAD_MSG))
        else:
            super()._handle(msg)


def test_a_message_the_client_cannot_read_is_skipped_for_good(logs):
    bus = make_kafka_bus(topic_partitions=1, create_seed_topics=False)
    topic, group = unique("test.unreadable"), unique("group")
    inbox = KafkaInbox()
    try:
        bus.ensure_topics([topic])
        bus.subscribe([topic], KafkaInbox(), group=group).close()  # starts at the end
        bus.publish(topic, "k", "readable")
        bus.publish(topic, "k", "unreadable")
        sub = UnreadableMarked(
            ConnectionSettings(KAFKA_ADDRESS), [topic], inbox, group=group, commit_interval=NEVER
        )
        sub.start(20)
        wait_for(lambda: any("skipping unreadable" in m for m in logs.messages(logging.WARNING)))
        sub.close()
        assert inbox.values() == [b"readable"]
        assert committed_and_ends(group, topic) == ({0: 2}, {0: 2})
    finally:
        bus.close()
