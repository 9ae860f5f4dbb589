"""Which nodes can take a task now: online node-mode Skalds with the class and room for it.

Load and used resources are counted from the tasks placed on a node (what the store
says is active there, kept current by the dispatcher from events), not from the
node's once-a-second report: the assignments made a moment ago already count, so a
burst of tasks does not all land on the node that looked empty one report ago.

Resources: a task may ask for ``{"gpu": 1}``; a node offers what it reports in its
info under ``resources`` (or ``capacity.resources``). A resource a node does not
report counts as 0, so such a task waits until a node reports having it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from skalds.model.task import Task
from skalds_controller.nodes import NodeInfo, node_resources

__all__ = ["NodeSlot", "node_resources", "node_slots"]

_DISPATCHABLE_MODE = "node"


@dataclass
class NodeSlot:
    """One eligible-in-principle node and what is taken on it (updated as tasks are placed)."""

    node_id: str
    max_workers: int
    class_names: frozenset[str]
    resources: dict[str, float] = field(default_factory=dict)
    load: int = 0
    used: dict[str, float] = field(default_factory=dict)
    assigning: int = 0
    """Tasks assigned here that the node has not started yet (see :meth:`busy`)."""

    @property
    def free(self) -> int:
        return max(0, self.max_workers - self.load)

    def refusal(self, task: Task) -> str | None:
        """Why this node cannot take ``task`` now, or ``None`` when it can."""
        if task.class_name not in self.class_names:
            return f"does not run {task.class_name}"
        if self.free <= 0:
            return f"is full ({self.load}/{self.max_workers} workers)"
        for name, wanted in task.resources.items():
            left = self.resources.get(name, 0.0) - self.used.get(name, 0.0)
            if wanted > left:
                return f"has {left:g} {name} free, the task needs {wanted:g}"
        return None

    def busy(self, max_assigning: int) -> bool:
        """Whether the node has ``max_assigning`` assignments it has not started yet.

        A node starts tasks at its own pace; past this many in flight, more tasks wait
        in the dispatcher (and may go to another node) rather than in its backlog,
        where they would outlast the assign timeout under a burst.
        """
        return self.assigning >= max_assigning

    def take(self, task: Task) -> None:
        """Count ``task`` as placed here, not started yet (within this dispatch pass)."""
        self.occupy(task.resources)
        self.assigning += 1

    def occupy(self, resources: Mapping[str, float]) -> None:
        """Count one more task, holding ``resources``, on this node."""
        self.load += 1
        for name, amount in resources.items():
            self.used[name] = self.used.get(name, 0.0) + amount


def node_slots(nodes: Iterable[NodeInfo], active: Iterable[Task] = ()) -> dict[str, NodeSlot]:
    """Slots for the online node-mode nodes, loaded with ``active`` tasks (not final)."""
    slots: dict[str, NodeSlot] = {}
    for node in nodes:
        if not node.online or node.mode != _DISPATCHABLE_MODE:
            continue
        try:
            max_workers = int(node.capacity.get("maxWorkers", 0))
        except (TypeError, ValueError):
            max_workers = 0
        slots[node.id] = NodeSlot(
            node.id, max_workers, frozenset(node.workers), node_resources(node.info)
        )
    for task in active:
        slot = slots.get(task.executor or "")
        if slot is not None and not task.lifecycle_status.is_final:
            slot.take(task)
    return slots
