"""What every event bus backend guarantees (run against each backend)."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from skalds.errors import PublishError
from skalds.ports import BusMessage, EventBus
from tests.helpers import collected_log, wait_for


class Inbox:
    """Collects messages a subscription receives."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.messages: list[BusMessage] = []
        self.lock = threading.Lock()
        self.fail_on = fail_on

    def __call__(self, msg: BusMessage) -> None:
        with self.lock:
            self.messages.append(msg)
        if self.fail_on is not None and msg.value == self.fail_on:
            raise RuntimeError("handler failure on purpose")

    def values(self) -> list[bytes]:
        with self.lock:
            return [m.value for m in self.messages]


def topic() -> str:
    return f"test.{uuid.uuid4().hex[:10]}"


def group() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


def test_a_subscriber_receives_what_is_published_after_it_subscribed(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    inbox = Inbox()
    sub = event_bus.subscribe([t], inbox, group=group())
    try:
        for i in range(5):
            event_bus.publish(t, "task-1", f"m{i}")
        wait_for(lambda: len(inbox.values()) == 5)
        assert inbox.values() == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        first = inbox.messages[0]
        assert (first.topic, first.key) == (t, "task-1")
        assert t in first.where()
    finally:
        sub.close()


def test_every_consumer_group_sees_every_message(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    a, b = Inbox(), Inbox()
    subs = [event_bus.subscribe([t], a, group=group()), event_bus.subscribe([t], b, group=group())]
    try:
        for i in range(3):
            event_bus.publish(t, f"k{i}", f"v{i}")
        wait_for(lambda: len(a.values()) == 3 and len(b.values()) == 3)
        assert sorted(a.values()) == sorted(b.values()) == [b"v0", b"v1", b"v2"]
    finally:
        for s in subs:
            s.close()


def test_a_group_that_comes_back_gets_what_was_published_while_it_was_away(event_bus: EventBus):
    t, g = topic(), group()
    event_bus.ensure_topics([t])
    first = Inbox()
    sub = event_bus.subscribe([t], first, group=g)
    event_bus.publish(t, "k", "before")
    wait_for(lambda: first.values() == [b"before"])
    sub.close()

    for i in range(3):
        event_bus.publish(t, "k", f"while-down-{i}")

    second = Inbox()
    sub = event_bus.subscribe([t], second, group=g)
    try:
        wait_for(lambda: len(second.values()) >= 3)
        assert second.values() == [b"while-down-0", b"while-down-1", b"while-down-2"]
    finally:
        sub.close()


def test_a_failing_handler_does_not_stop_the_subscription(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    inbox = Inbox(fail_on=b"poison")
    sub = event_bus.subscribe([t], inbox, group=group())
    try:
        event_bus.publish(t, "k", "poison")
        event_bus.publish(t, "k", "fine")
        wait_for(lambda: inbox.values() == [b"poison", b"fine"])
    finally:
        sub.close()


def test_one_subscription_can_consume_several_topics(event_bus: EventBus):
    t1, t2 = topic(), topic()
    event_bus.ensure_topics([t1, t2])
    inbox = Inbox()
    sub = event_bus.subscribe([t1, t2], inbox, group=group())
    try:
        event_bus.publish(t1, "a", "one")
        event_bus.publish(t2, "b", "two")
        wait_for(lambda: len(inbox.values()) == 2)
        assert {(m.topic, m.value) for m in inbox.messages} == {(t1, b"one"), (t2, b"two")}
    finally:
        sub.close()


def test_a_closed_subscription_receives_nothing_more(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    inbox = Inbox()
    sub = event_bus.subscribe([t], inbox, group=group())
    event_bus.publish(t, "k", "1")
    wait_for(lambda: inbox.values() == [b"1"])
    sub.close()
    event_bus.publish(t, "k", "2")
    threading.Event().wait(0.3)
    assert inbox.values() == [b"1"]


def test_an_oversized_message_is_refused_with_a_clear_error(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    with pytest.raises(PublishError, match=r"bytes|size|large"):
        event_bus.publish(t, "k", b"x" * 20_000_000)


def test_messages_with_the_same_key_keep_their_order(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    inbox = Inbox()
    sub = event_bus.subscribe([t], inbox, group=group())
    try:
        for i in range(50):
            event_bus.publish(t, "same-task", str(i))
        wait_for(lambda: len(inbox.values()) == 50)
        assert inbox.values() == [str(i).encode() for i in range(50)]
    finally:
        sub.close()


def test_publish_nowait_delivers_in_order_with_publish_for_the_same_key(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    inbox = Inbox()
    sub = event_bus.subscribe([t], inbox, group=group())
    try:
        for i in range(30):
            if i % 3 == 0:
                event_bus.publish(t, "same-task", str(i))
            else:
                event_bus.publish_nowait(t, "same-task", str(i))
        wait_for(lambda: len(inbox.values()) == 30)
        assert inbox.values() == [str(i).encode() for i in range(30)]
        assert {m.key for m in inbox.messages} == {"same-task"}
    finally:
        sub.close()


def test_publish_nowait_never_raises_and_logs_what_it_could_not_send(event_bus: EventBus):
    t = topic()
    event_bus.ensure_topics([t])
    with collected_log(logging.WARNING) as lines:
        event_bus.publish_nowait(t, "task-big", b"x" * 20_000_000)  # refused at once
        event_bus.close()
        event_bus.publish_nowait(t, "task-late", "after close")
    assert any(t in line and "task-big" in line and "bytes" in line for line in lines), lines
    assert any(t in line and "task-late" in line and "closed" in line for line in lines), lines
