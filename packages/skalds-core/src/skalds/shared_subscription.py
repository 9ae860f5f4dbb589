"""One bus subscription for the several parts of a process that follow task events.

A controller's dispatcher and live events (SSE, metrics) follow ``task.created``,
``task.assign`` and ``taskworker.update``; under ``skalds up`` its node, in the same
process, follows ``task.assign`` and ``task.cancel`` too. Each with a consumer group of
its own, every event reached the process once per part: one fetch from the broker, one
delivery, one consumer thread each. On Kafka a delivery costs the broker about as much
as the publish itself, and a task sends four events, so :class:`SharedSubscription`
receives each event once, in one consumer group, and hands it to every part that
follows its topic.

Subscribing may fail while the bus is down; a thread retries until it succeeds, and
each follower is told (``on_subscribed``) so that it can read what it may have missed
from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from skalds.errors import BackendUnavailableError
from skalds.ports.event_bus import BusMessage, EventBus, MessageHandler, Subscription
from skalds.utils.logging import logger

__all__ = ["SharedSubscription"]

_RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class _Follower:
    topics: frozenset[str]
    handler: MessageHandler
    on_subscribed: Callable[[], None] | None


class SharedSubscription:
    """Consume ``topics`` once as ``group``; hand each message to the followers of its topic.

    The subscription starts with the first :meth:`follow` (on a thread of its own, which
    retries while the bus refuses) and ends with :meth:`close`. A follower's handler
    runs on the bus's thread, one message at a time; one that raises is logged and the
    other followers still get the message.

    Args:
        bus: the event bus.
        group: the consumer group (one per process: each sees every event).
        topics: every topic a follower may ask for.
        name: names this subscription in log lines.
        retry_seconds: how long to wait before subscribing again after a failure.
    """

    def __init__(
        self,
        bus: EventBus,
        group: str,
        topics: Sequence[str],
        *,
        name: str = "bus events",
        retry_seconds: float = _RETRY_SECONDS,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics = tuple(topics)
        self.name = name
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._followers: tuple[_Follower, ...] = ()
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._up = threading.Event()
        self._last_error = ""

    @property
    def subscribed(self) -> bool:
        """Whether messages are being received."""
        return self._subscription is not None

    def follow(
        self,
        topics: Collection[str],
        handler: MessageHandler,
        *,
        on_subscribed: Callable[[], None] | None = None,
        wait: float | None = None,
    ) -> None:
        """Hand messages of ``topics`` to ``handler`` from now on; subscribe if not yet done.

        Args:
            topics: a subset of this subscription's topics.
            handler: called with each such message, on the bus's thread.
            on_subscribed: called (on the subscribing thread) once the subscription is
                up, or at once if it already is.
            wait: return only once subscribed, waiting up to this many seconds (what
                is published after that reaches ``handler``); ``None``: do not wait.

        Raises:
            ValueError: a topic this subscription does not consume.
            RuntimeError: the subscription was closed.
            BackendUnavailableError: not subscribed within ``wait`` seconds (the
                handler stays a follower; the subscription goes on retrying).
        """
        unknown = set(topics) - set(self.topics)
        if unknown:
            raise ValueError(f"{self.name} does not consume {', '.join(sorted(unknown))}")
        follower = _Follower(frozenset(topics), handler, on_subscribed)
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError(f"{self.name}: closed")
            self._followers = (*self._followers, follower)
            up = self._subscription is not None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._subscribe_loop, name="skalds-bus-subscribe", daemon=True
                )
                self._thread.start()
        if up and on_subscribed is not None:
            on_subscribed()
        if wait is not None and not self._up.wait(wait):
            raise BackendUnavailableError(
                f"{self.name}: not subscribed to {', '.join(self.topics)} within {wait:g} s"
                f"{self._last_error}"
            )

    def unfollow(self, handler: MessageHandler) -> None:
        """Stop handing messages to ``handler`` (the subscription goes on for the others)."""
        with self._lock:
            self._followers = tuple(f for f in self._followers if f.handler != handler)

    def close(self) -> None:
        """Stop retrying and leave the consumer group (after the message being handled)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                subscription.close()
            except Exception as exc:
                logger.warning("%s: closing the subscription failed: %s", self.name, exc)

    def _on_message(self, msg: BusMessage) -> None:
        for follower in self._followers:  # a tuple: followers added meanwhile wait a message
            if msg.topic not in follower.topics:
                continue
            try:
                follower.handler(msg)
            except Exception:
                logger.exception("%s: a handler failed on %s", self.name, msg.where())

    def _subscribe_loop(self) -> None:
        """Subscribe, retrying while the bus is down (joining a Kafka group may take seconds)."""
        failing = False
        while not self._stop.is_set():
            try:
                self.bus.ensure_topics(self.topics)
                subscription = self.bus.subscribe(self.topics, self._on_message, group=self.group)
            except Exception as exc:
                self._last_error = f" (last error: {exc})"
                if not failing:
                    logger.error(
                        "%s: cannot subscribe to %s (%s); retrying every %.0f s",
                        self.name,
                        ", ".join(self.topics),
                        exc,
                        self.retry_seconds,
                    )
                failing = True
                self._stop.wait(self.retry_seconds)
                continue
            with self._lock:
                if self._stop.is_set():
                    subscription.close()
                    return
                self._subscription = subscription
                followers = self._followers
            self._up.set()
            if failing:
                logger.info("%s: subscribed to %s", self.name, ", ".join(self.topics))
            for follower in followers:
                if follower.on_subscribed is not None:
                    try:
                        follower.on_subscribed()
                    except Exception:
                        logger.exception("%s: an on_subscribed callback failed", self.name)
            return
