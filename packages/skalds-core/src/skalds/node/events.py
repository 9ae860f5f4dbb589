"""How a node reacts to bus events (task.assign, task.cancel, task.update.attachment...).

The store is the truth and events are hints: an assign event makes the node start the
task only if the store says its executor is this node and its status allows it (one
compare-and-set, which also returns the task), so a replayed or duplicated event never
starts a task twice; an event about an older run of a task (its ``incarnation``) is
ignored. What each event does is :class:`~skalds.node.convergence.Convergence`'s.
Malformed events are logged with topic/partition/offset and skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pydantic import ValidationError

from skalds.errors import SkaldsError
from skalds.model.event import TaskEvent
from skalds.node.convergence import Convergence
from skalds.node.lanes import LaneExecutor
from skalds.ports.event_bus import BusMessage, Topic
from skalds.utils.logging import logger

__all__ = ["NODE_TOPICS", "NodeEventHandler", "parse_task_event"]

NODE_TOPICS = (
    Topic.TASK_ASSIGN.value,
    Topic.TASK_CANCEL.value,
    Topic.TASK_UPDATE_ATTACHMENT.value,
    Topic.TASK_PAUSE.value,
    Topic.TASK_RESUME.value,
)
_MAX_IN_FLIGHT = 256
"""Events handed to the lanes and not done yet; past this the bus waits (back-pressure)."""
_QUEUE_WAIT = 5.0
"""How long the bus waits for room; then the event is dropped and a reconcile covers it."""


def parse_task_event(msg: BusMessage) -> TaskEvent | None:
    """Parse a TaskEvent; log and return ``None`` for anything malformed."""
    try:
        return TaskEvent.model_validate_json(msg.value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        logger.warning("skipping malformed event at %s: %s", msg.where(), problems)
        return None


class NodeEventHandler:
    """The bus handler of one node; the work runs on the node's lanes, by task.

    It hands each task's work to that task's lane and returns without waiting, so
    one slow start (a store round trip, a fork) does not hold up the others and
    the bus keeps flowing. At most ``_MAX_IN_FLIGHT`` are queued: past that the bus
    waits up to ``_QUEUE_WAIT`` seconds for room, then the event is dropped, said so
    in the log (and counted in :attr:`dropped`), and the node reconciles with the
    store at once, which does what the event asked (the store holds it). The
    message may thus be committed before its work is done: a node that dies
    meanwhile finds that work in the store when it starts again (its reconcile),
    as with any lost event.

    Args:
        node_id: this node's id (events for another recipient are skipped).
        mode: this node's mode (only ``node`` mode takes ``task.assign``).
        actions: what the events do.
        executor: the node's lanes.
        on_overflow: called when an event was dropped (the node's reconcile).
    """

    def __init__(
        self,
        node_id: str,
        mode: str,
        actions: Convergence,
        executor: LaneExecutor,
        on_overflow: Callable[[], None] = lambda: None,
    ) -> None:
        self.node_id = node_id
        self.mode = mode
        self.executor = executor
        self.on_overflow = on_overflow
        self.dropped = 0
        self._last_drop_log = 0.0
        self._in_flight = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
        self._by_topic: dict[str, Callable[[str, int | None], object]] = {
            Topic.TASK_ASSIGN.value: actions.assign,
            Topic.TASK_CANCEL.value: actions.cancel,
            Topic.TASK_UPDATE_ATTACHMENT.value: actions.attachments_changed,
            Topic.TASK_PAUSE.value: lambda task_id, inc: actions.pause(task_id, True, inc),
            Topic.TASK_RESUME.value: lambda task_id, inc: actions.pause(task_id, False, inc),
        }

    def __call__(self, msg: BusMessage) -> None:
        action = self._by_topic.get(msg.topic)
        event = parse_task_event(msg) if action else None
        if action is None or event is None:
            return
        if event.recipient and event.recipient != self.node_id:
            return
        if msg.topic == Topic.TASK_ASSIGN.value and self.mode != "node":
            return
        for task_id in event.task_ids:
            if not self._in_flight.acquire(timeout=_QUEUE_WAIT):
                self._drop(msg, task_id)
                continue
            future = self.executor.submit_for(
                task_id, self._one, action, task_id, event.incarnation, msg
            )
            future.add_done_callback(lambda _: self._in_flight.release())

    def _drop(self, msg: BusMessage, task_id: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log > 10.0:
            self._last_drop_log = now
            logger.warning(
                "node %s: %d events queued for %g s; dropped the event at %s for task %s "
                "(%d dropped so far); reconciling with the store, which holds what they ask",
                self.node_id,
                _MAX_IN_FLIGHT,
                _QUEUE_WAIT,
                msg.where(),
                task_id,
                self.dropped,
            )
        self.on_overflow()

    @staticmethod
    def _one(
        action: Callable[[str, int | None], object],
        task_id: str,
        incarnation: int | None,
        msg: BusMessage,
    ) -> None:
        try:
            action(task_id, incarnation)
        except SkaldsError as exc:
            logger.warning("event at %s for task %s: %s", msg.where(), task_id, exc)
        except Exception:
            logger.exception("event at %s for task %s failed", msg.where(), task_id)
