"""At-least-once consumption on the real broker: poison messages, commits, coming back."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

pytest.importorskip("skalds_kafka")

from pydantic import ValidationError

from skalds.model.event import TaskEvent
from skalds.ports import BusMessage
from skalds_kafka import DEAD_LETTER_TOPIC
from tests.backends.kafka import (
    KafkaInbox,
    make_kafka_bus,
    unique,
)
from tests.helpers import wait_for


class TaskEventHandler:
    """Parses every message as a TaskEvent, like a node does; raises on anything else."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def __call__(self, msg: BusMessage) -> None:
        if msg.value == b"raise":
            raise RuntimeError("handler failure on purpose")
        if len(msg.value) > 100_000:
            raise ValueError(f"event of {len(msg.value)} bytes is too large to be a TaskEvent")
        try:
            self.events.append(TaskEvent.model_validate_json(msg.value))
        except ValidationError as exc:
            raise ValueError(f"not a TaskEvent: {exc.error_count()} error(s)") from None

    def task_ids(self) -> list[str]:
        return [tid for e in self.events for tid in e.task_ids]


def event(task_id: str) -> str:
    return TaskEvent(task_ids=[task_id]).model_dump_json()


def test_poison_messages_are_logged_with_where_and_skipped(bus, logs):
    topic = unique("test.poison")
    bus.ensure_topics([topic])
    handler = TaskEventHandler()
    sub = bus.subscribe([topic], handler, group=unique("group"))
    try:
        bus.publish(topic, "t", "{not json")
        bus.publish(topic, "t", b"\xff\xfe binary")
        bus.publish(topic, "t", b"x" * 900_000)
        bus.publish(topic, "t", "raise")
        bus.publish(topic, "t", event("task-after-poison"))
        wait_for(lambda: handler.task_ids() == ["task-after-poison"], timeout=10)
    finally:
        sub.close()
    failures = [m for m in logs.messages(logging.ERROR) if "message skipped" in m]
    assert len(failures) == 4
    offsets = sorted(int(re.search(r"\]@(\d+)", m).group(1)) for m in failures)  # type: ignore[union-attr]
    assert offsets == [0, 1, 2, 3]
    assert all(re.search(rf"{re.escape(topic)}\[\d+\]@\d+", m) for m in failures)


def test_failed_messages_are_copied_to_the_dead_letter_topic_when_enabled(logs):
    bus = make_kafka_bus(dead_letter=True)
    topic = unique("test.dlq")
    dead = KafkaInbox()
    handler = TaskEventHandler()
    subs = []
    try:
        bus.ensure_topics([topic])
        subs.append(bus.subscribe([DEAD_LETTER_TOPIC], dead, group=unique("dlq-reader")))
        subs.append(bus.subscribe([topic], handler, group=unique("group")))
        bus.publish(topic, "task-9", "raise")
        bus.publish(topic, "task-9", event("task-9"))
        wait_for(lambda: handler.task_ids() == ["task-9"])
        wait_for(lambda: [m for m in dead.messages if topic in m.headers.get("skalds.source", "")])
        copy = next(m for m in dead.messages if topic in m.headers.get("skalds.source", ""))
        assert (copy.key, copy.value) == ("task-9", b"raise")
        assert copy.headers["skalds.error"] == "RuntimeError: handler failure on purpose"
        assert re.fullmatch(rf"{re.escape(topic)}\[\d+\]@0", copy.headers["skalds.source"])
    finally:
        for sub in subs:
            sub.close()
        bus.close()


def test_an_offset_is_committed_only_after_the_handler_returned(logs):
    """A handler still busy when its subscription closes: its message comes again."""
    bus = make_kafka_bus(close_timeout=0.5, create_seed_topics=False)
    topic, group = unique("test.commit"), unique("group")
    entered, release = threading.Event(), threading.Event()
    seen: list[bytes] = []

    def slow(msg: BusMessage) -> None:
        seen.append(msg.value)
        if msg.value == b"slow":
            entered.set()
            release.wait(10)

    try:
        bus.ensure_topics([topic])
        sub = bus.subscribe([topic], slow, group=group)
        bus.publish(topic, "k", "handled")
        bus.publish(topic, "k", "slow")
        assert entered.wait(10)
        started = time.monotonic()
        sub.close()  # the handler is still inside "slow"
        assert time.monotonic() - started < 3
        release.set()
        assert seen == [b"handled", b"slow"]

        again = KafkaInbox()
        sub = bus.subscribe([topic], again, group=group)
        try:
            wait_for(lambda: again.values(), timeout=10)
            time.sleep(0.3)
            assert again.values() == [b"slow"]  # "handled" was committed, "slow" was not
        finally:
            sub.close()
    finally:
        release.set()
        bus.close()
    assert any("will be delivered again" in m for m in logs.messages(logging.WARNING))


def test_a_group_closed_while_messages_were_published_gets_them_all_back(bus):
    """Many keys over several partitions: each partition resumes at its own commit."""
    topic, group = unique("test.resume"), unique("group")
    bus.ensure_topics([topic])
    first = KafkaInbox()
    sub = bus.subscribe([topic], first, group=group)
    bus.publish(topic, "k0", "before")
    wait_for(lambda: first.values() == [b"before"])
    sub.close()

    expected = {f"{k}:{i}".encode() for k in range(6) for i in range(5)}
    for value in sorted(expected):
        bus.publish(topic, f"task-{value.decode().split(':')[0]}", value)

    second = KafkaInbox()
    sub = bus.subscribe([topic], second, group=group)
    try:
        wait_for(lambda: len(second.values()) >= len(expected), timeout=15)
        time.sleep(0.3)
        assert sorted(second.values()) == sorted(expected)  # all of them, once each
        assert len({m.partition for m in second.messages}) > 1
    finally:
        sub.close()


def test_a_handler_may_close_its_own_subscription(bus):
    topic = unique("test.selfclose")
    bus.ensure_topics([topic])
    seen: list[bytes] = []
    holder: dict[str, object] = {}

    def handler(msg: BusMessage) -> None:
        seen.append(msg.value)
        holder["sub"].close()  # type: ignore[attr-defined]

    holder["sub"] = bus.subscribe([topic], handler, group=unique("group"))
    bus.publish(topic, "k", "1")
    bus.publish(topic, "k", "2")
    wait_for(lambda: seen)
    time.sleep(0.5)
    assert seen == [b"1"]
