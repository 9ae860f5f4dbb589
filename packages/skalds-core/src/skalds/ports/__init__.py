"""The four ports of the system: event bus, cache, store and worker runtime.

Each is a small abstract base class; the in-memory implementations live in
:mod:`skalds.memory` and :mod:`skalds.runtime`, adapters in their own packages.
"""

from skalds.ports.cache import Cache, CacheOp, Delete, HashDelete, HashSet, ListSet, Set
from skalds.ports.event_bus import BusMessage, EventBus, Subscription, Topic
from skalds.ports.runtime import WorkerListener, WorkerOutcome, WorkerRuntime, WorkerSpec
from skalds.ports.store import Increment, Store, TaskQuery

__all__ = [
    "BusMessage",
    "Cache",
    "CacheOp",
    "Delete",
    "EventBus",
    "HashDelete",
    "HashSet",
    "Increment",
    "ListSet",
    "Set",
    "Store",
    "Subscription",
    "TaskQuery",
    "Topic",
    "WorkerListener",
    "WorkerOutcome",
    "WorkerRuntime",
    "WorkerSpec",
]
