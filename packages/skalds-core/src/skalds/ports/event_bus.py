"""Event bus port: publish task events, consume them with at-least-once delivery."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from skalds.errors import PublishError
from skalds.utils.logging import logger

__all__ = ["BusMessage", "EventBus", "MessageHandler", "Subscription", "Topic"]


class Topic(StrEnum):
    """Shared topics; the message key is the task id (never a topic per task)."""

    TASK_ASSIGN = "task.assign"
    TASK_CANCEL = "task.cancel"
    TASK_UPDATE_ATTACHMENT = "task.update.attachment"
    TASKWORKER_UPDATE = "taskworker.update"
    TASK_PAUSE = "task.pause"
    TASK_RESUME = "task.resume"
    TASK_CREATED = "task.created"
    """A task waits for a node (published by the API; the dispatcher reacts at once)."""


@dataclass(frozen=True)
class BusMessage:
    """One consumed message, with where it came from (for logs about poison messages)."""

    topic: str
    key: str | None
    value: bytes
    partition: int = 0
    offset: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        """Return ``topic[partition]@offset`` for log lines."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


MessageHandler = Callable[[BusMessage], None]


class Subscription(abc.ABC):
    """A running consumer; ``close()`` stops it after the message being handled."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop consuming. Offsets of handled messages stay committed."""


class EventBus(abc.ABC):
    """Publish/subscribe with consumer groups.

    Semantics every backend keeps (the contract suite checks them):

    * ``publish`` returns only once the bus has the message, and raises
      :class:`~skalds.errors.PublishError` when it cannot deliver it.
    * Each consumer group sees every message published after the group first
      subscribed; two groups each see all of them.
    * A message's offset is committed only after the handler returns (also when it
      raises: a handler error is logged, never retried forever), so a group that
      resubscribes resumes after the last handled message: nothing is lost while
      the consumer was down.
    * Handlers run on the bus's own thread(s); one message at a time per subscription.
    """

    @abc.abstractmethod
    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Deliver one message; raise ``PublishError`` when the bus does not confirm it."""

    def publish_nowait(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Hand one message to the bus for delivery, without waiting for its confirmation.

        For hints whose loss only delays something the store already holds (a node's
        status events, a task created or assigned): the calling thread goes on while
        the bus delivers, and messages sent meanwhile share round trips to the broker.
        Messages with the same key keep their order, also relative to ``publish``.
        Nothing is raised: a message the bus refuses or cannot deliver is logged with
        its topic and key. The default waits, as ``publish`` does, and logs a refusal.
        """
        try:
            self.publish(topic, key, value)
        except PublishError as exc:
            logger.warning("could not publish %s (key %s): %s", topic, key, exc)

    @abc.abstractmethod
    def subscribe(
        self, topics: Sequence[str], handler: MessageHandler, *, group: str
    ) -> Subscription:
        """Start consuming ``topics`` as consumer group ``group``; return once assigned."""

    def ensure_topics(self, topics: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Create ``topics`` up front where the backend needs it (default: nothing)."""

    def ping(self) -> bool:
        """Return True when the backend answers (default: always)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional lifecycle
        """Release connections. Subscriptions should be closed first."""
