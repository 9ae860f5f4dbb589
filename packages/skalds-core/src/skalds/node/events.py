"""How a node reacts to bus events (task.assign, task.cancel, task.update.attachment...).

The store is the truth and events are hints: an assign event makes the node start the
task only if the store says its executor is this node and its status allows it (one
compare-and-set, which also returns the task), so a replayed or duplicated event never
starts a task twice.
Malformed events are logged with topic/partition/offset and skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from skalds.errors import SkaldsError
from skalds.model.event import TaskEvent
from skalds.model.task import TaskLifecycleStatus
from skalds.node.lanes import LaneExecutor
from skalds.ports.event_bus import BusMessage, Topic
from skalds.utils.logging import logger

if TYPE_CHECKING:
    from skalds.node.skald import Skald

__all__ = ["NODE_TOPICS", "NodeEventHandler", "parse_task_event"]

S = TaskLifecycleStatus
NODE_TOPICS = (
    Topic.TASK_ASSIGN.value,
    Topic.TASK_CANCEL.value,
    Topic.TASK_UPDATE_ATTACHMENT.value,
    Topic.TASK_PAUSE.value,
    Topic.TASK_RESUME.value,
)
_MAX_IN_FLIGHT = 256
"""Events handed to the lanes and not done yet; past this the bus waits (back-pressure)."""
_HANDLE_TIMEOUT = 60.0


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
    the bus keeps flowing; at most ``_MAX_IN_FLIGHT`` are queued before it waits.
    The message may thus be committed before its work is done: a node that dies
    meanwhile finds that work in the store when it starts again (its reconcile),
    as with any lost event.
    """

    def __init__(self, skald: Skald, executor: LaneExecutor) -> None:
        self.skald = skald
        self.executor = executor
        self._in_flight = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
        self._by_topic: dict[str, Callable[[str], object]] = {
            Topic.TASK_ASSIGN.value: self._assign,
            Topic.TASK_CANCEL.value: skald.cancel_task,
            Topic.TASK_UPDATE_ATTACHMENT.value: self._update,
            Topic.TASK_PAUSE.value: skald.pause_task,
            Topic.TASK_RESUME.value: skald.resume_task,
        }

    def __call__(self, msg: BusMessage) -> None:
        action = self._by_topic.get(msg.topic)
        event = parse_task_event(msg) if action else None
        if action is None or event is None:
            return
        if event.recipient and event.recipient != self.skald.skald_id:
            return
        if msg.topic == Topic.TASK_ASSIGN.value and self.skald.config.skald_mode != "node":
            return
        for task_id in event.task_ids:
            if not self._in_flight.acquire(timeout=_HANDLE_TIMEOUT):
                raise TimeoutError(
                    f"node {self.skald.skald_id}: {_MAX_IN_FLIGHT} events still being "
                    f"handled after {_HANDLE_TIMEOUT:g} s"
                )
            future = self.executor.submit_for(task_id, self._one, action, task_id, msg)
            future.add_done_callback(lambda _: self._in_flight.release())

    @staticmethod
    def _one(action: Callable[[str], object], task_id: str, msg: BusMessage) -> None:
        try:
            action(task_id)
        except SkaldsError as exc:
            logger.warning("event at %s for task %s: %s", msg.where(), task_id, exc)
        except Exception:
            logger.exception("event at %s for task %s failed", msg.where(), task_id)

    def _assign(self, task_id: str) -> None:
        self.skald.supervisor.start_assigned(task_id)

    def _update(self, task_id: str) -> None:
        if task_id not in self.skald.supervisor.tasks:
            return
        task = self.skald.store.get_task(task_id)
        if task is None:
            logger.warning("task.update.attachment for %s, which is not in the store", task_id)
            return
        self.skald.update_task(task_id, task.attachments_dict())
