"""The controller's shared bus subscription, on every event bus backend.

One consumer group per controller; each message reaches the process once and is handed
to every part that follows its topic.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence

import pytest

from skalds.errors import BackendUnavailableError
from skalds.memory import MemoryEventBus
from skalds.ports import BusMessage, EventBus, Subscription
from skalds.ports.event_bus import MessageHandler
from skalds.shared_subscription import SharedSubscription
from tests.contract.test_event_bus_contract import Inbox
from tests.helpers import collected_log, wait_for


def seen(inbox: Inbox) -> list[tuple[str, bytes]]:
    """(topic, value) of what ``inbox`` received, in order."""
    with inbox.lock:
        return [(m.topic, m.value) for m in inbox.messages]


def names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"test.a-{tag}", f"test.b-{tag}", f"group-{tag}"


class CountingBus(EventBus):
    """Wraps a bus: counts subscriptions, and refuses the first ``refuse`` of them."""

    def __init__(self, inner: EventBus, refuse: int = 0) -> None:
        self.inner = inner
        self.refuse = refuse
        self.groups: list[str] = []

    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        self.inner.publish(topic, key, value)

    def subscribe(
        self, topics: Sequence[str], handler: MessageHandler, *, group: str
    ) -> Subscription:
        if self.refuse > 0:
            self.refuse -= 1
            raise BackendUnavailableError("the bus is down (on purpose)")
        self.groups.append(group)
        return self.inner.subscribe(topics, handler, group=group)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        self.inner.ensure_topics(topics)


def test_each_follower_gets_the_topics_it_follows_from_one_consumer_group(event_bus: EventBus):
    a, b, group = names()
    bus = CountingBus(event_bus)
    shared = SharedSubscription(bus, group, [a, b])
    both, only_b = Inbox(), Inbox()
    subscribed = threading.Event()
    try:
        shared.follow([a, b], both, on_subscribed=subscribed.set)
        shared.follow([b], only_b)
        wait_for(subscribed.is_set)
        event_bus.publish(a, "task-1", "one")
        event_bus.publish(b, "task-1", "two")
        wait_for(lambda: len(seen(both)) == 2 and len(seen(only_b)) == 1)
        assert seen(both) == [(a, b"one"), (b, b"two")]
        assert seen(only_b) == [(b, b"two")]
        assert bus.groups == [group]  # one subscription for both followers
    finally:
        shared.close()


def test_a_failing_follower_does_not_keep_the_message_from_the_others(event_bus: EventBus):
    a, _, group = names()
    shared = SharedSubscription(event_bus, group, [a])
    inbox = Inbox()
    subscribed = threading.Event()

    def broken(msg: BusMessage) -> None:
        raise RuntimeError("broken on purpose")

    try:
        with collected_log(logging.ERROR) as lines:
            shared.follow([a], broken, on_subscribed=subscribed.set)
            shared.follow([a], inbox)
            wait_for(subscribed.is_set)
            event_bus.publish(a, "task-1", "first")
            event_bus.publish(a, "task-1", "second")
            wait_for(lambda: len(seen(inbox)) == 2)
        assert seen(inbox) == [(a, b"first"), (a, b"second")]
        assert any("handler failed" in line and a in line for line in lines), lines
    finally:
        shared.close()


def test_an_unfollowed_handler_gets_nothing_more_and_a_late_follower_is_told_at_once(
    event_bus: EventBus,
):
    a, _, group = names()
    shared = SharedSubscription(event_bus, group, [a])
    first, second = Inbox(), Inbox()
    subscribed = threading.Event()
    try:
        shared.follow([a], first, on_subscribed=subscribed.set)
        wait_for(subscribed.is_set)
        told = threading.Event()
        shared.follow([a], second, on_subscribed=told.set)
        assert told.is_set()  # already subscribed: called before follow returned
        event_bus.publish(a, "k", "1")
        wait_for(lambda: len(seen(first)) == 1 and len(seen(second)) == 1)
        shared.unfollow(first)
        event_bus.publish(a, "k", "2")
        wait_for(lambda: len(seen(second)) == 2)
        assert seen(first) == [(a, b"1")]
    finally:
        shared.close()


def test_a_topic_it_does_not_consume_is_refused():
    a, b, group = names()
    shared = SharedSubscription(MemoryEventBus(), group, [a])
    with pytest.raises(ValueError, match=b):
        shared.follow([a, b], Inbox())
    assert not shared.subscribed  # nothing started


def test_it_retries_while_the_bus_refuses_and_then_tells_its_followers():
    a, _, group = names()
    inner = MemoryEventBus()
    bus = CountingBus(inner, refuse=2)
    shared = SharedSubscription(bus, group, [a], retry_seconds=0.05)
    inbox = Inbox()
    subscribed = threading.Event()
    try:
        with collected_log(logging.INFO) as lines:
            shared.follow([a], inbox, on_subscribed=subscribed.set)
            wait_for(subscribed.is_set)
        assert bus.refuse == 0 and bus.groups == [group]
        refused = [line for line in lines if "cannot subscribe" in line]
        assert len(refused) == 1 and "down (on purpose)" in refused[0]  # logged once
        assert any("subscribed to" in line for line in lines)
        inner.publish(a, "k", "after the outage")
        wait_for(lambda: seen(inbox) == [(a, b"after the outage")])
    finally:
        shared.close()
