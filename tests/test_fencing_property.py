"""A stateful property test of one node: whatever happens, a task runs at most once.

Hypothesis interleaves what users and controllers do to tasks (assign, cancel,
re-queue, attachment updates, pause, resume) with what goes wrong (the node SIGKILLed
together with its fork server, then restarted under the same id; events delayed,
duplicated, reordered or lost; random pauses). After every step it checks, from the
history the worker processes write themselves (:class:`tests.workers.LedgerWorker`):

* at most one live worker process per task;
* a task the store says is Running or Paused runs nowhere but as the run the store
  holds (its executor, this node, with that incarnation).

After quiescence (every event delivered, the node reconciled) it checks that each
task the store wants running runs once, paused as the store says, with the stored
attachments applied, and that nothing else runs.

The node is killed by doing in-process what the kernel does when it dies: it loses
its backends, its fork server is SIGKILLed, its ends of the worker pipes close and
its lock file is let go; the workers and the next node have to cope, as with a real
``kill -9 -- -<pgid>`` (tests/test_fencing.py does that one with OS processes).

``SKALDS_PROPERTY_EXAMPLES`` sets the number of examples (CI: 500).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailableError, TaskNotFoundError
from skalds.memory import MemoryCache, MemoryStore
from skalds.model.event import TaskEvent
from skalds.model.task import ACTIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node.skald import Skald
from skalds.plugins import Backends
from skalds.ports import Increment, Topic
from skalds.ports.cache import Cache, CacheOp
from skalds.ports.event_bus import BusMessage, EventBus, MessageHandler, Subscription
from skalds.ports.store import Store, TaskQuery
from tests.conftest import IN_CI
from tests.helpers import wait_for
from tests.workers import LedgerWorker, read_ledger

S = TaskLifecycleStatus
NODE = "prop-node"
TASKS_PER_EXAMPLE = 3
EXAMPLES = int(os.environ.get("SKALDS_PROPERTY_EXAMPLES", "500" if IN_CI else "60"))

pytestmark = pytest.mark.slow


# -- the backends, as one node sees them ----------------------------------------------------


class Severed(BackendUnavailableError):
    """The node is dead: it reaches nothing any more."""


class ChaosBus:
    """The test's event bus: it holds what is published until the test delivers it.

    The test then delivers the held events in an order it chooses, some twice, some
    never: the delays, duplicates, reorderings and losses of a real bus.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held: list[BusMessage] = []
        self._subscribers: list[_BusView] = []
        self._offset = 0

    def attach(self, view: _BusView) -> None:
        with self._lock:
            self._subscribers.append(view)

    def hold(self, topic: str, key: str | None, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else value
        with self._lock:
            if not any(topic in v.topics for v in self._subscribers if v.handler):
                return  # nobody listens (taskworker.update, task.created): nothing to hold
            self._offset += 1
            self.held.append(BusMessage(topic, key, data, offset=self._offset))

    def take(self) -> list[BusMessage]:
        with self._lock:
            taken, self.held = self.held, []
        return taken

    def deliver(self, msg: BusMessage) -> None:
        with self._lock:
            views = [v for v in self._subscribers if v.handler and not v.severed]
        for view in views:
            if msg.topic in view.topics and view.handler is not None:
                view.handler(msg)


class _BusView(EventBus):
    def __init__(self, bus: ChaosBus) -> None:
        self.bus = bus
        self.severed = False
        self.topics: frozenset[str] = frozenset()
        self.handler: MessageHandler | None = None
        bus.attach(self)

    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        if self.severed:
            raise Severed("the node is dead")
        self.bus.hold(topic, key, value)

    def subscribe(
        self, topics: Sequence[str], handler: MessageHandler, *, group: str
    ) -> Subscription:
        self.topics = frozenset(topics)
        self.handler = handler
        view = self

        class _Sub(Subscription):
            def close(self) -> None:
                view.handler = None

        return _Sub()

    def ping(self) -> bool:
        return not self.severed


class _StoreView(Store):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.severed = False

    def _check(self) -> Store:
        if self.severed:
            raise Severed("the node is dead")
        return self.store

    def create_task(self, task: Task) -> Task:
        return self._check().create_task(task)

    def get_task(self, task_id: str) -> Task | None:
        return self._check().get_task(task_id)

    def list_tasks(self, query: TaskQuery | None = None) -> list[Task]:
        return self._check().list_tasks(query)

    def update_task(self, task_id: str, changes: Any, **expected: Any) -> Task | None:
        return self._check().update_task(task_id, changes, **expected)

    def update_tasks(self, task_ids: Any, changes: Any, **expected: Any) -> list[str]:
        return self._check().update_tasks(task_ids, changes, **expected)

    def delete_task(self, task_id: str) -> bool:
        return self._check().delete_task(task_id)

    def ping(self) -> bool:
        return not self.severed


class _CacheView(Cache):
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.severed = False

    def _check(self) -> Cache:
        if self.severed:
            raise Severed("the node is dead")
        return self.cache

    def apply(self, ops: Sequence[CacheOp]) -> None:
        self._check().apply(ops)

    def get(self, key: str) -> str | None:
        return self._check().get(key)

    def hash_get_all(self, key: str) -> dict[str, str]:
        return self._check().hash_get_all(key)

    def list_get(self, key: str) -> list[str]:
        return self._check().list_get(key)


# -- the world: shared backends and the one node ------------------------------------------------


class World:
    """What outlives one example: the store, the cache, the bus and the node."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = MemoryStore()
        self.cache = MemoryCache()
        self.bus = ChaosBus()
        self.node: Skald | None = None
        self._views: tuple[_BusView, _CacheView, _StoreView] | None = None
        self.kills = 0

    def start_node(self) -> None:
        views = (_BusView(self.bus), _CacheView(self.cache), _StoreView(self.store))
        config = SkaldConfig(
            skald_id=NODE,
            skald_mode="node",
            load_entry_points=False,
            cancel_grace_seconds=0.3,
            reconcile_interval=3600,  # the test reconciles when it wants to
            heartbeat_interval=0.2,
            log_path=str(self.root / "logs"),
            run_dir=str(self.root / "run"),
            fork_server="copy",  # a fork of this process: a restart costs milliseconds
        )
        node = Skald(config, backends=Backends(*views))
        node.register_task_worker(LedgerWorker)
        node.start()
        self.node, self._views = node, views

    def kill_node(self) -> None:
        """What a SIGKILL of the node's process group does, done to the in-process node."""
        node, views = self.node, self._views
        assert node is not None and views is not None
        self.node = self._views = None
        self.kills += 1
        for view in views:
            view.severed = True  # its connections are gone
        runtime: Any = node.supervisor.runtime
        runtime._signal_group = lambda pgid, sig: None  # a dead node signals nobody
        runtime._stopping.set()  # its supervisor thread is gone ...
        runtime._wake()
        runtime._thread.join(timeout=5)
        pid, _kind = runtime.fork_server
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # ... its fork server too (the same group)
        for handle in list(runtime._handles.values()):  # the kernel closes its pipe ends
            with contextlib.suppress(OSError):
                handle.pipe.sock.shutdown(socket.SHUT_RDWR)
        runtime._node_lock.close_descriptor()  # and its descriptor of the lock file
        threading.Thread(target=node.stop, name="dead-node-cleanup", daemon=True).start()

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("property"))
    world.start_node()
    yield world
    world.close()


# -- reading what the workers wrote -------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


class Copies:
    """The processes a task's workers recorded, and what each one last held."""

    def __init__(self, ledger: Path) -> None:
        self.starts: dict[int, dict[str, Any]] = {}
        self.last: dict[int, dict[str, Any]] = {}
        for entry in read_ledger(ledger):
            pid = int(entry["pid"])  # type: ignore[call-overload]
            if entry["e"] == "start":
                self.starts[pid] = entry
            if entry["e"] in ("start", "update"):
                self.last[pid] = entry

    def live(self) -> list[int]:
        return [pid for pid in self.starts if alive(pid)]


# -- the state machine ----------------------------------------------------------------------------


class NodeMachine(RuleBasedStateMachine):
    """One example: a few tasks of this node, and whatever hypothesis does to them."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.prefix = f"p{uuid.uuid4().hex[:6]}"
        self.ids = [f"{self.prefix}-{i}" for i in range(TASKS_PER_EXAMPLE)]
        self.ledgers = {t: world.root / f"{t}.jsonl" for t in self.ids}
        # What was last asked of each task (when the asking took effect in the store):
        # the status it must end in, and the run.
        self.asked: dict[str, tuple[TaskLifecycleStatus, int]] = {
            t: (S.CREATED, 0) for t in self.ids
        }
        for task_id in self.ids:
            world.store.create_task(
                Task(
                    id=task_id,
                    class_name="LedgerWorker",
                    is_persistent=True,
                    attachments={"ledger": str(self.ledgers[task_id]), "value": 0},
                )
            )

    @property
    def store(self) -> MemoryStore:
        return self.world.store

    def stored(self, task_id: str) -> Task:
        task = self.store.get_task(task_id)
        assert task is not None
        return task

    def publish(self, topic: Topic, task_id: str, incarnation: int | None) -> None:
        event = TaskEvent(task_ids=[task_id], initiator="test", incarnation=incarnation)
        self.world.bus.hold(topic.value, task_id, event.model_dump_json())

    # -- what users and controllers do (store first, then an event, as the API does) --------

    @initialize(
        starting=st.lists(
            st.sampled_from(["created", "running", "paused"]),
            min_size=TASKS_PER_EXAMPLE,
            max_size=TASKS_PER_EXAMPLE,
        )
    )
    def node_up(self, starting: list[str]) -> None:
        """The node is up; each task starts Created, Running or Paused (through the
        same asks as the rules), so the first steps already meet running work."""
        if self.world.node is None:
            self.world.start_node()
        for i, state in enumerate(starting):
            if state != "created":
                self.assign(i)
        self.settle()
        for i, state in enumerate(starting):
            if state == "paused":
                self.pause_or_resume(i, paused=True)
        self.settle()

    @rule(i=st.integers(0, TASKS_PER_EXAMPLE - 1))
    def assign(self, i: int) -> None:
        task = self.stored(self.ids[i])
        placed = self.store.update_task(
            task.id,
            {"lifecycle_status": S.ASSIGNING, "executor": NODE, "incarnation": Increment(1)},
            expected_status={S.CREATED},
            expected_incarnation=task.incarnation,
        )
        if placed is not None:
            self.asked[task.id] = (S.RUNNING, placed.incarnation)
            self.publish(Topic.TASK_ASSIGN, task.id, placed.incarnation)

    @rule(i=st.integers(0, TASKS_PER_EXAMPLE - 1))
    def cancel(self, i: int) -> None:
        self._cancel(self.ids[i])

    def _cancel(self, task_id: str) -> None:
        changed = self.store.update_task(
            task_id, {"lifecycle_status": S.CANCELLED}, expected_status=ACTIVE_STATUSES
        )
        if changed is not None:
            self.asked[task_id] = (S.CANCELLED, changed.incarnation)
            self.publish(Topic.TASK_CANCEL, task_id, changed.incarnation)

    @rule(i=st.integers(0, TASKS_PER_EXAMPLE - 1))
    def requeue(self, i: int) -> None:
        task_id = self.ids[i]
        self._cancel(task_id)
        requeued = self.store.update_task(
            task_id,
            {"lifecycle_status": S.CREATED, "executor": None, "attempts": 0},
            expected_status={S.FINISHED, S.FAILED, S.CANCELLED},
        )
        if requeued is not None:
            self.asked[task_id] = (S.CREATED, requeued.incarnation)

    @rule(i=st.integers(0, TASKS_PER_EXAMPLE - 1), value=st.integers(1, 1000), big=st.booleans())
    def update(self, i: int, value: int, big: bool) -> None:
        task_id = self.ids[i]
        attachments = {
            "ledger": str(self.ledgers[task_id]),
            "value": value,
            "payload": "x" * (400_000 if big else 0),  # more than a socket buffer holds
        }
        updated = self.store.update_task(task_id, {"attachments": attachments})
        assert updated is not None
        if updated.lifecycle_status in (S.RUNNING, S.PAUSED):
            self.publish(Topic.TASK_UPDATE_ATTACHMENT, task_id, updated.incarnation)

    @rule(i=st.integers(0, TASKS_PER_EXAMPLE - 1), paused=st.booleans())
    def pause_or_resume(self, i: int, paused: bool) -> None:
        task = self.stored(self.ids[i])
        was, want = (S.RUNNING, S.PAUSED) if paused else (S.PAUSED, S.RUNNING)
        changed = self.store.update_task(
            task.id,
            {"lifecycle_status": want},
            expected_status={was},
            expected_executor=task.executor,
            expected_incarnation=task.incarnation,
        )
        if changed is not None:
            self.asked[task.id] = (want, changed.incarnation)
            self.publish(
                Topic.TASK_PAUSE if paused else Topic.TASK_RESUME, task.id, changed.incarnation
            )

    # -- what goes wrong -------------------------------------------------------------------------

    @rule(rnd=st.randoms(use_true_random=False), dup=st.floats(0, 0.5), loss=st.floats(0, 0.2))
    def deliver(self, rnd: random.Random, dup: float, loss: float) -> None:
        """Deliver what is held in a random order, some twice, some never."""
        held = self.world.bus.take()
        rnd.shuffle(held)
        for msg in held:
            if rnd.random() < loss:
                continue
            for _ in range(2 if rnd.random() < dup else 1):
                self.world.bus.deliver(msg)

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.05, 0.2]))
    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    @precondition(lambda self: self.world.node is not None)
    @rule()
    def settle(self) -> None:
        """Everything delivered once, in order, and reconciled: tasks reach what was
        asked, so that the faults after it meet running and paused tasks too."""
        assert self.world.node is not None
        for msg in self.world.bus.take():
            self.world.bus.deliver(msg)
        self.world.node.reconcile()
        time.sleep(0.02)

    @precondition(lambda self: self.world.node is not None)
    @rule()
    def kill_node(self) -> None:
        self.world.kill_node()

    @precondition(lambda self: self.world.node is None)
    @rule()
    def restart_node(self) -> None:
        self.world.start_node()

    @precondition(lambda self: self.world.node is not None)
    @rule()
    def reconcile(self) -> None:
        assert self.world.node is not None
        self.world.node.reconcile()

    # -- what must hold after every step -------------------------------------------------------

    @invariant()
    def at_most_one_copy_runs_where_the_store_says(self) -> None:
        for task_id in self.ids:
            copies = Copies(self.ledgers[task_id])
            live = copies.live()
            assert len(live) <= 1, f"{task_id}: {len(live)} live copies {live}"
            task = self.stored(task_id)
            if task.lifecycle_status in (S.RUNNING, S.PAUSED) and live:
                (pid,) = live
                assert task.executor == NODE
                run = copies.starts[pid]["inc"]
                assert run == task.incarnation, (
                    f"{task_id}: the store holds run {task.incarnation} "
                    f"({task.lifecycle_status.value}), but run {run} runs (pid {pid})"
                )

    # -- after quiescence ------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._settle_and_check()
        finally:
            self._clear()

    def _settle_and_check(self) -> None:
        world = self.world
        if world.node is None:
            world.start_node()
        assert world.node is not None
        node = world.node

        def settled() -> bool:
            for msg in world.bus.take():
                world.bus.deliver(msg)
            node.reconcile()
            return all(self._converged(task_id) for task_id in self.ids)

        self._wait(settled, "as the store says")
        # A paused worker holds back the updates it got meanwhile: resumed, it applies
        # the latest, and then every running worker holds the stored attachments.
        for task_id in self.ids:
            self.pause_or_resume(self.ids.index(task_id), paused=False)
        self._wait(settled, "after resuming the paused tasks")

    def _wait(self, settled: Callable[[], bool], when: str) -> None:
        try:
            wait_for(settled, timeout=20, interval=0.1)
        except AssertionError:
            raise AssertionError(
                f"not settled {when}:\n" + "\n".join(map(self._describe, self.ids))
            ) from None

    def _describe(self, task_id: str) -> str:
        task = self.stored(task_id)
        copies = Copies(self.ledgers[task_id])
        live = {pid: (copies.last[pid], stopped(pid)) for pid in copies.live()}
        asked, run = self.asked[task_id]
        return (
            f"{task_id} (asked: {asked.value}, run {run}): "
            f"{task.lifecycle_status.value} on {task.executor} run {task.incarnation}, "
            f"attachments v{task.attachments_version} "
            f"(applied v{task.applied_attachments_version}); "
            f"live {live}; local {self.world.node and self.world.node.supervisor.local(task_id)}"
        )

    def _converged(self, task_id: str) -> bool:
        task = self.stored(task_id)
        if (task.lifecycle_status, task.incarnation) != self.asked[task_id]:
            return False  # not (yet) in the state last asked for
        copies = Copies(self.ledgers[task_id])
        live = copies.live()
        if task.lifecycle_status.is_final:
            return not live
        if task.lifecycle_status is S.CREATED and task.executor is None:
            return not live  # re-queued, waiting for a dispatcher
        if task.lifecycle_status not in (S.RUNNING, S.PAUSED):
            return False  # placed here: it must start
        if not live and task.lifecycle_status is S.PAUSED:
            # Paused before its worker wrote its start (a stopped process writes
            # nothing): then the process the node runs must exist, and be stopped.
            local = self.world.node and self.world.node.supervisor.local(task_id)
            return bool(
                local and local.pid and local.incarnation == task.incarnation and stopped(local.pid)
            )
        if len(live) != 1:
            return False
        (pid,) = live
        if copies.starts[pid]["inc"] != task.incarnation:
            return False
        if task.lifecycle_status is S.PAUSED:
            return stopped(pid)  # updates wait for the resume
        last = copies.last[pid]
        return (
            not stopped(pid)
            and last["v"] == task.attachments_version
            and last["value"] == task.attachments_dict().get("value")
            and task.applied_attachments_version == task.attachments_version
        )

    def _clear(self) -> None:
        """Cancel this example's tasks and wait until their processes are gone."""
        for task_id in self.ids:
            self._cancel(task_id)
        node = self.world.node
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for msg in self.world.bus.take():
                self.world.bus.deliver(msg)
            if node is not None:
                node.reconcile()
            if not any(Copies(self.ledgers[t]).live() for t in self.ids):
                break
            time.sleep(0.05)
        for task_id in self.ids:
            with contextlib.suppress(TaskNotFoundError):
                self.store.delete_task(task_id)
            for pid in Copies(self.ledgers[task_id]).live():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                raise AssertionError(f"{task_id}: pid {pid} outlived its cancel")


@pytest.mark.timeout(1800)
def test_a_task_runs_at_most_once_whatever_happens_to_its_node(world):
    run_state_machine_as_test(
        lambda: NodeMachine(world),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=IN_CI,
            print_blob=True,
        ),
    )
    print(f"{EXAMPLES} examples; the node was killed {world.kills} times")
