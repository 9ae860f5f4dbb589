"""The dispatcher: puts Created tasks on nodes, within milliseconds of the reason to.

It wakes on ``task.created`` (the API), ``taskworker.update`` (a task re-queued, or a
worker ended: capacity and dependencies change), a node joining (the monitor tells
it) and winning the lease; besides, a slow timer repairs whatever events missed.
A burst of events makes one pass, not one per event, and an event that changes
nothing to place makes none: a start, unless a task waits for one, and an end
(other than a failure, which may be retried), unless tasks wait. While every node
is still starting ``max_assigning`` assignments, nothing can be placed until they
start some: new tasks then only queue, and a pass waits for ``max_assigning // 2``
starts (a flood would otherwise make a pass for every start, each placing one
task). The next pass takes those notes in.

Passes come in two sizes, because listing every active task is a full collection
scan on some stores (FerretDB filters in Go, not in an index):

* a **full pass** (every ``reconcile_every`` seconds, and first thing after winning
  the lease) reads every active task from the store and rebuilds what the
  dispatcher keeps in memory: the queue of waiting tasks and the tasks placed on
  each node (their load);
* a **quick pass** (every other wake) reads only the tasks events named, by id, and
  works from that memory.

Both then do the same steps, only while this controller holds the dispatcher lease:

1. Failed tasks with tries left go back to Created with ``not_before`` (back-off).
2. Assignments not picked up within ``assign_timeout`` go back to Created.
3. Waiting tasks, highest priority first, oldest first: an expired deadline (of a
   task that never started: a deadline gates the first start only) or a failed
   dependency fails them (with the reason); unmet dependencies or a future
   ``not_before`` make them wait; otherwise the strategy picks an eligible node.
4. The picks are made: Created → Assigning is a compare-and-set, and ``task.assign``
   goes to that node (which moves the task to Running). The compare-and-sets of one
   node's picks go to the store together (``Store.update_tasks``: one round trip on
   real services), up to ``dispatcher_assign_concurrency`` nodes at once; placing
   stays one by one, so capacity is counted as before. A node
   holding ``dispatcher_max_assigning_per_node`` assignments it has not started yet
   takes no more until it starts some (its Running events wake the dispatcher): a
   burst queues here, in Created, not in one node's backlog.

Between passes, a task the API creates while nothing waits is placed at once
(:meth:`Dispatcher.place_on_create`, ``DISPATCHER_PLACE_ON_CREATE``): the same choice
a pass would make, from the node places the last pass counted, and the task is
stored as Assigning on that node instead of Created — one store write, one event and
one pass fewer per task. Anything waiting, or a node using up its places, sends new
tasks back through the passes.

Memory may be stale (a missed event); the compare-and-set keeps that harmless — a
task cancelled meanwhile simply fails to move and is dropped — and the next full
pass corrects it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from skalds.errors import TaskNotFoundError
from skalds.model.task import ACTIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node.events import parse_task_event
from skalds.plugins import Backends
from skalds.ports.event_bus import BusMessage, Topic
from skalds.ports.store import Increment, TaskQuery
from skalds.shared_subscription import SharedSubscription
from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_controller.lease import Lease
from skalds_controller.nodes import NodeDirectory
from skalds_controller.placement import NodeSlot, node_slots
from skalds_controller.retries import Retries
from skalds_controller.rules import Readiness, check_dependencies, too_late_to_start
from skalds_controller.settings import ControllerSettings, DispatchStrategy, or_setting
from skalds_controller.strategies import Strategy, make_strategy
from skalds_controller.transitions import Transitions

__all__ = ["DISPATCHER_TOPICS", "DispatchObserver", "Dispatcher"]

S = TaskLifecycleStatus
# task.assign: to count tasks that were given a node by hand (the API's ``executor``).
DISPATCHER_TOPICS = (
    Topic.TASK_CREATED.value,
    Topic.TASK_ASSIGN.value,
    Topic.TASKWORKER_UPDATE.value,
)
_ENDED_TITLES = frozenset({S.FINISHED.value, S.FAILED.value, S.CANCELLED.value})
_OFFERS_REMEMBERED = 10_000


class DispatchObserver(Protocol):
    """Where the dispatcher reports what it did (the controller's metrics)."""

    def observe_dispatch_latency(self, seconds: float) -> None: ...

    def event_handled(self, source: str) -> None: ...

    def event_failed(self, source: str) -> None: ...


@dataclass
class _Placed:
    """A task the dispatcher counts on a node: it holds a slot and its resources there."""

    node_id: str
    resources: Mapping[str, float]
    assigning_since: int | None
    """When it was assigned, while the node has not started it yet (ms); else None."""
    incarnation: int | None = None
    """The run placed there, when known (an assignment undone must be that run)."""


@dataclass
class _Pick:
    """A waiting task and the node chosen for it, to be assigned at the end of a pass."""

    task: Task
    slot: NodeSlot
    ready_ms: int
    """When the task became ready to run (for the dispatch latency)."""


class Dispatcher:
    """Assigns tasks to nodes; one per controller, acting only while it holds the lease.

    Args:
        backends: the shared event bus, cache and store.
        settings: read for the strategy at every pass (so changing
            ``settings.dispatcher_strategy`` switches it too).
        controller_id: names this controller in events and its consumer group.
        lease: the dispatcher lease; ``None`` dispatches unconditionally (the store's
            compare-and-set still prevents double assignment).
        observer: receives dispatch latencies and event counts.
        assign_timeout: seconds an assignment may stay un-picked before it is undone
            (default: ``settings.dispatcher_assign_timeout``).
        reconcile_every: seconds between passes when no event arrives (default:
            ``settings.dispatcher_reconcile_interval``).
        retry_sweep_every: seconds between scans of all Failed tasks for retries
            (events bring failures at once; the scan only repairs missed ones;
            default: ``settings.retry_sweep_interval``).
        rng: random source of the RANDOM strategy.
        assign_concurrency: assignments made at once at the end of a pass (default:
            ``settings.dispatcher_assign_concurrency``).
        max_assigning: assignments a node may have not yet started (default:
            ``settings.dispatcher_max_assigning_per_node``).
        events: the controller's shared bus subscription to follow; ``None`` makes
            one of the dispatcher's own (consumer group ``skalds-dispatcher-<id>``).
    """

    def __init__(
        self,
        backends: Backends,
        settings: ControllerSettings,
        *,
        controller_id: str,
        lease: Lease | None = None,
        observer: DispatchObserver | None = None,
        assign_timeout: float | None = None,
        reconcile_every: float | None = None,
        retry_sweep_every: float | None = None,
        rng: random.Random | None = None,
        assign_concurrency: int | None = None,
        max_assigning: int | None = None,
        events: SharedSubscription | None = None,
    ) -> None:
        self.backends = backends
        self.settings = settings
        self.controller_id = controller_id
        self.lease = lease
        self.observer = observer
        self.assign_timeout = or_setting(assign_timeout, settings.dispatcher_assign_timeout)
        self.reconcile_every = or_setting(reconcile_every, settings.dispatcher_reconcile_interval)
        self.assign_concurrency = int(
            or_setting(assign_concurrency, settings.dispatcher_assign_concurrency)
        )
        self.max_assigning = int(
            or_setting(max_assigning, settings.dispatcher_max_assigning_per_node)
        )
        self._assigners: ThreadPoolExecutor | None = None  # made at the first batch
        self._held_back = False  # a task waited only for a node to start its assignments
        self._waiting = True  # tasks were left waiting at the end of the last pass
        # Every node was still starting max_assigning tasks at the end of the last pass:
        # nothing can be placed until they start some, so starts and ends wake a pass
        # only once there are enough of them to be worth one (see _worth_a_pass).
        self._all_busy = False
        self._progress = 0  # starts and ends since the last pass began
        self._progress_per_pass = max(1, self.max_assigning // 2)
        self.transitions = Transitions(backends, controller_id)
        self._rng = rng or random.Random()
        self._strategy: Strategy = make_strategy(settings.dispatcher_strategy, self._rng)
        self._nodes = NodeDirectory(backends.cache)  # own instance: it keeps state
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.retries = Retries(
            backends.store,
            self.transitions,
            sweep_every=or_setting(retry_sweep_every, settings.retry_sweep_interval),
        )
        self._waiting_why: dict[str, str] = {}
        # What the dispatcher knows (rebuilt by each full pass, kept by events between):
        self._queue: dict[str, Task] = {}  # Created and unassigned
        self._placed: dict[str, _Placed] = {}  # active with an executor
        self._next_full = 0.0  # monotonic time of the next full pass
        # One placer at a time: a pass, or the API placing a task it creates
        # (place_on_create), which uses the last pass's slots while no pass runs.
        self._placing = threading.Lock()
        self._slots: dict[str, NodeSlot] | None = None
        self._node_changes = 0  # a pass keeps its slots only if no node came or went meanwhile
        # Task ids events named since the last pass (written by the bus thread):
        self._notes_lock = threading.Lock()
        self._noted: set[str] = set()  # to read: created, re-queued, started elsewhere
        self._assigned: set[str] = set()  # by someone else
        self._started: set[str] = set()
        self._ended: set[str] = set()
        # Tasks this process's API created, handed over in memory (see offer):
        self._offered: dict[str, Task] = {}
        self._offered_ids: OrderedDict[str, None] = OrderedDict()  # their events, to skip
        self._offered_placed: dict[str, _Placed] = {}  # created with an executor
        self._own_events = events is None
        self._events = events or SharedSubscription(
            backends.event_bus,
            f"skalds-dispatcher-{controller_id}",
            DISPATCHER_TOPICS,
            name="dispatcher",
        )
        self._thread: threading.Thread | None = None
        self.counts: dict[str, int] = {
            "passes": 0,
            "assigned": 0,
            "retried": 0,
            "reassigned": 0,
            "failed": 0,
            "placed_on_create": 0,
        }
        if lease is not None:
            lease.on_change(self._lease_changed)

    # -- control ------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this dispatcher may act now."""
        return self.lease is None or self.lease.held

    @property
    def strategy(self) -> DispatchStrategy:
        """The strategy in the settings (an unknown value there keeps the current one)."""
        try:
            return DispatchStrategy(self.settings.dispatcher_strategy)
        except ValueError:
            return self._strategy.name

    def set_strategy(self, name: DispatchStrategy | str) -> DispatchStrategy:
        """Switch the strategy from the next pass on; return it.

        Raises:
            ValueError: ``name`` is not a strategy.
        """
        kind = DispatchStrategy(name)
        self.settings.dispatcher_strategy = kind
        self.wake()
        return kind

    def wake(self) -> None:
        """Run a pass as soon as possible (cheap; many wakes make one pass)."""
        self._wake.set()

    def offer(self, task: Task) -> None:
        """Take a task this process just created, without reading it back from the store.

        The API calls this after storing a task, before it publishes ``task.created``
        (or ``task.assign``); that event then needs no store read either. Only a
        shortcut: a task changed since (cancelled, say) fails its compare-and-set and is
        dropped, as with any stale memory, and a controller that does not lead forgets
        its offers with its notes.

        A task created with an executor (assigned by hand, or placed by
        :meth:`place_on_create`) is not placed here; it only takes a place on its node
        (an unstarted assignment, if it was placed). That is counted at the next pass,
        which need not come sooner: every pass applies the offers before it places
        anything.
        """
        if task.executor:  # only what its place needs, not the attachments
            since = task.update_date_time if task.lifecycle_status is S.ASSIGNING else None
            place = _Placed(task.executor, dict(task.resources), since, task.incarnation)
            with self._notes_lock:
                self._offered_placed[task.id] = place
            if since is not None:  # placed by place_on_create, and now stored
                self._observe("observe_dispatch_latency", 0.0)
            return
        with self._notes_lock:
            self._offered[task.id] = task
            self._noted.add(task.id)
            self._offered_ids[task.id] = None
            while len(self._offered_ids) > _OFFERS_REMEMBERED:
                self._offered_ids.popitem(last=False)
            if not self._worth_a_pass_for_new():
                return
        self._wake.set()

    def place_on_create(self, task: Task) -> str | None:
        """Choose a node for a task the API is about to store; ``None`` leaves it to a pass.

        The API then stores the task as Assigning on that node and sends it
        ``task.assign``, as it does for a task created with an executor: no
        compare-and-set Created → Assigning, no ``task.created`` event, no pass. Only
        while this dispatcher leads, no pass runs and nothing waits ahead of the task
        (no queue, no offered or noted task), so priorities are kept; and only with the
        node places the last pass counted (each placement here takes one, as a pass
        does), so a node gets no more than ``max_assigning`` unstarted tasks. A task
        with dependencies, a start time or an expired deadline is left to a pass.

        Exactly once still holds: the task is new, so its insert is its only write
        until the node's compare-and-set Assigning → Running; an assignment nobody
        picks up is undone after ``assign_timeout`` like any other.
        """
        if task.executor or task.dependencies or task.not_before is not None:
            return None
        if not self.leading or self._stop.is_set() or too_late_to_start(task, now_ms()):
            return None
        if not self._placing.acquire(blocking=False):
            return None  # a pass runs: it, or the next one, places the task
        try:
            slots = self._slots
            if slots is None or self._queue:
                return None
            with self._notes_lock:
                if self._offered or self._noted or self._assigned:
                    return None  # tasks the next pass learns of may come first
                if any(p.assigning_since is None for p in self._offered_placed.values()):
                    return None  # assigned by hand since: a place the slots do not count
            ready = [
                slot
                for slot in slots.values()
                if slot.refusal(task) is None and not slot.busy(self.max_assigning)
            ]
            if not ready:
                return None
            chosen = slots[self._current_strategy().pick(ready).node_id]
            chosen.take(task)
            self.counts["assigned"] += 1
            self.counts["placed_on_create"] += 1
        finally:
            self._placing.release()
        return chosen.node_id

    def unplace(self, task: Task) -> None:
        """The API could not store a task :meth:`place_on_create` placed (its id was
        taken, the store failed): uncount it; the next pass counts the places anew."""
        with self._placing:
            self._slots = None
            self.counts["assigned"] -= 1
            self.counts["placed_on_create"] -= 1

    def on_node_change(self, node_id: str, online: bool) -> None:
        """Monitor listener: a node that joins may take waiting tasks."""
        self._node_changes += 1  # a pass running now keeps no slots (see _run_pass)
        self._slots = None  # a node gone must not be chosen; the next pass counts anew
        self._all_busy = False
        if online:
            self.wake()

    def _lease_changed(self, held: bool) -> None:
        self._slots = None
        self._all_busy = False
        if held:
            self.retries.sweep_soon()  # a new leader first repairs what the old one left
            self._next_full = 0.0  # and reads the store afresh: its memory may be old
            self.wake()

    def start(self) -> None:
        """Start the dispatch thread and follow the bus (subscribing, retrying, meanwhile).

        Joining a consumer group can take seconds on Kafka: the subscription is made
        on a thread of its own, and periodic passes run from the start. Once it is up,
        a pass places what was created while nobody listened.
        """
        self._thread = threading.Thread(target=self._loop, name="skalds-dispatcher", daemon=True)
        self._thread.start()
        self._events.follow(DISPATCHER_TOPICS, self._on_message, on_subscribed=self.wake)

    def stop(self) -> None:
        """Stop after the current pass and stop following the bus."""
        self._stop.set()
        self._wake.set()
        self._events.unfollow(self._on_message)
        if self._own_events:
            self._events.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._assigners is not None:
            self._assigners.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        """The dispatcher's state for status pages."""
        return {
            "controllerId": self.controller_id,
            "strategy": self.strategy.value,
            "leading": self.leading,
            "leaseHolder": self.lease.current_holder() if self.lease else self.controller_id,
            "subscribed": self._events.subscribed,
            **self.counts,
        }

    # -- events (bus thread) ----------------------------------------------------------------

    def _on_message(self, msg: BusMessage) -> None:
        event = parse_task_event(msg)
        if event is None:
            self._observe("event_failed", "dispatcher")
            return
        self._observe("event_handled", "dispatcher")
        ids = event.task_ids
        if msg.topic == Topic.TASK_ASSIGN.value:
            if event.initiator != self.controller_id:
                self._note(self._assigned, ids)  # it takes a slot: read it at the next pass
            return
        if msg.topic == Topic.TASK_CREATED.value:
            fresh = []
            with self._notes_lock:  # a task offered in memory needs no second look
                for task_id in ids:
                    if task_id in self._offered_ids:
                        del self._offered_ids[task_id]
                    else:
                        fresh.append(task_id)
                self._noted.update(fresh)
                if not fresh or not self._worth_a_pass_for_new():
                    return
        elif event.title == S.CREATED.value:
            with self._notes_lock:
                self._noted.update(ids)
                if not self._worth_a_pass_for_new():
                    return
        elif event.title == S.RUNNING.value:
            with self._notes_lock:  # the lock pairs this with the end of run_pass
                self._started.update(ids)
                self._progress += len(ids)
                if not self._held_back or not self._worth_a_pass():
                    return  # no slot is freed (or too few yet): no pass needed
            # a start frees a place among a node's unstarted assignments
        elif event.title in _ENDED_TITLES:
            if event.title == S.FAILED.value:
                self._note(self._ended, ids)
                self.retries.note_failed(ids)  # a pass may retry it
            else:
                with self._notes_lock:  # the lock pairs this with the end of run_pass
                    self._ended.update(ids)
                    self._progress += sum(map(self._ended_unstarted, ids))
                    if not self._waiting or not self._worth_a_pass():
                        return  # the freed place has no taker: the next pass counts it
        else:
            return  # Paused, UpdateApplied...: nothing to place
        self._wake.set()

    def _note(self, into: set[str], ids: Iterable[str]) -> None:
        with self._notes_lock:
            into.update(ids)

    def _worth_a_pass(self) -> bool:
        """Whether the starts and ends since the last pass began are worth a pass.

        Called with the notes lock held. While every node is still starting
        ``max_assigning`` tasks, one start frees one place; a pass for each would cost
        more than it places (a flood makes hundreds a second). So a pass waits for
        ``max_assigning // 2`` of them: each node still has that many tasks to start
        meanwhile, so none runs dry, and they are sure to come (the node starts each
        task it holds, or it ends unstarted, cancelled say: that counts too; a node
        that dies ends the wait through the monitor, or the assign timeout, as
        before). The end of a task that had started frees no such place, so it
        does not count.
        """
        return not self._all_busy or self._progress >= self._progress_per_pass

    def _ended_unstarted(self, task_id: str) -> bool:
        """Whether an ended task still held one of its node's unstarted places.

        Called with the notes lock held; reads the dispatcher thread's memory (a
        task it placed a moment ago may not be filed yet: then False, and the timer
        of its assignment still comes).
        """
        placed = self._placed.get(task_id)
        return (
            placed is not None
            and placed.assigning_since is not None
            and (task_id not in self._started)
        )

    def _worth_a_pass_for_new(self) -> bool:
        """Whether a task just noted (created or re-queued) is worth a pass now.

        Called with the notes lock held. Not while every node is busy starting: the
        task could only wait, and the starts to come will wake a pass for it.
        """
        if not self._all_busy:
            return True
        self._held_back = self._waiting = True  # the starts (and ends) to come place it
        return False

    def _take_notes(
        self,
    ) -> tuple[set[str], set[str], set[str], dict[str, Task], dict[str, _Placed]]:
        """Return what was noted since the last pass, and forget it.

        That is: the ids to read, started and ended; the offered tasks; the places
        of the tasks offered with an executor (assigned by hand).
        """
        with self._notes_lock:
            offered, self._offered = self._offered, {}
            placed, self._offered_placed = self._offered_placed, {}
            noted, self._noted = self._noted, set()
            assigned, self._assigned = self._assigned, set()
            started, self._started = self._started, set()
            ended, self._ended = self._ended, set()
            self._progress = 0
        noted.update(assigned - self._placed.keys() - ended)
        return noted, started, ended, offered, placed

    def _observe(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            logger.exception("dispatcher: the metrics observer failed")

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        next_pass = 0.0
        failing = False
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_pass - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()
            if not self.leading:
                self.retries.drop_noted()  # the leader handles them
                self._take_notes()  # likewise; a new leader starts with a full pass
                next_pass = time.monotonic() + self.reconcile_every
                continue
            try:
                next_pass = time.monotonic() + self.run_pass()
                if failing:
                    logger.info("dispatcher: backends answer again; dispatching")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.error("dispatcher: pass failed (%s); retrying in 1 s", exc)
                failing = True
                self._next_full = 0.0  # what the failed pass had taken in is read again
                next_pass = time.monotonic() + 1.0

    def run_pass(self, *, full: bool = False) -> float:
        """Do one dispatch pass now; return the seconds until the next one is due.

        Args:
            full: read every active task from the store first (otherwise done only
                when a full pass is due).
        """
        with self._placing:
            self._slots = None  # if the pass fails, nothing is placed on create
            return self._run_pass(full)

    def _run_pass(self, full: bool) -> float:
        self.counts["passes"] += 1
        now = now_ms()
        self.counts["retried"] += self.retries.run(now)
        known: dict[str, Task] = {}
        if full or time.monotonic() >= self._next_full:
            self._next_full = time.monotonic() + self.reconcile_every
            self._take_notes()  # the listing below supersedes them
            known = self._reload()
        else:
            self._apply_notes()
        due = [max(0.0, self._next_full - time.monotonic())]
        self._undo_stale_assignments(now, due)
        node_changes = self._node_changes
        slots = node_slots(self._nodes.list())
        for placed in self._placed.values():
            slot = slots.get(placed.node_id)
            if slot is not None:
                slot.occupy(placed.resources)
                if placed.assigning_since is not None:
                    slot.assigning += 1
        waiting = sorted(
            self._queue.values(), key=lambda t: (-t.priority, t.create_date_time, t.id)
        )
        self._forget(waiting)
        strategy = self._current_strategy()
        lookup = _memo(self.backends.store.get_task, known)
        picks: list[_Pick] = []
        held: list[str] = []  # waiting only for a node to start what it was given
        saturated = False  # once true, stays so this pass: places are only taken
        for task in waiting:
            if not self.leading or self._stop.is_set():
                break
            saturated = saturated or (bool(held) and self._saturated(slots))
            if saturated:
                # Every node is full or still starting what it was given: nothing more
                # is placed this pass, so the rest of a long queue only has its
                # deadlines kept (not a whole look each, at every pass of a burst).
                self._keep_deadline(task, now, due)
                continue
            try:
                pick = self._consider(task, now, slots, strategy, lookup, due, held)
            except TaskNotFoundError:
                self._queue.pop(task.id, None)  # deleted meanwhile
                continue
            if pick is not None:
                pick.slot.take(task)  # the next tasks of this pass see the place taken
                picks.append(pick)
        if picks:
            self._assign_all(picks, due)
        all_busy = bool(slots) and all(s.busy(self.max_assigning) for s in slots.values())
        if node_changes == self._node_changes:  # else a node came or went: keep none
            self._slots = slots  # what place_on_create takes from until the next pass
        else:
            all_busy = False
        with self._notes_lock:  # pairs with _on_message: a start or end during the pass counts
            # With every node busy, whatever waits (for a dependency, say) can be
            # placed only after starts: they must wake a pass, whatever else ends.
            self._held_back = bool(held) or (all_busy and bool(self._queue))
            self._waiting = bool(self._queue)
            self._all_busy = all_busy
            if self._noted and self._worth_a_pass_for_new():  # tasks came during the pass
                self._wake.set()
            progress = (self._held_back and self._started) or (self._waiting and self._ended)
            if progress and self._worth_a_pass():
                self._wake.set()
        return max(0.0, min(due))

    def _reload(self) -> dict[str, Task]:
        """Rebuild the queue and the placed tasks from the store's active tasks."""
        active = self.backends.store.list_tasks(TaskQuery(statuses=ACTIVE_STATUSES))
        self._queue.clear()
        self._placed.clear()
        for task in active:
            self._learn(task.id, task)
        return {t.id: t for t in active}

    def _apply_notes(self) -> None:
        """Bring memory up to date with what events said since the last pass."""
        noted, started, ended, offered, by_hand = self._take_notes()
        for task_id in ended:
            self._queue.pop(task_id, None)
            self._placed.pop(task_id, None)
        for task_id, place in by_hand.items():  # before the starts: theirs need no read
            if task_id not in ended:
                self._queue.pop(task_id, None)
                self._placed[task_id] = place  # as _learn files a Created task with an executor
        for task_id in started - ended:
            placed = self._placed.get(task_id)
            if placed is None:
                noted.add(task_id)  # started by hand elsewhere: learn its node and needs
            else:
                placed.assigning_since = None
        for task_id in noted:  # even if it ended too: a retry re-creates a failed task
            task = offered.get(task_id)
            if task is None or task_id in ended:
                task = self.backends.store.get_task(task_id)
            self._learn(task_id, task)

    def _learn(self, task_id: str, task: Task | None) -> None:
        """File ``task`` (as read from the store) as waiting, placed, or neither."""
        self._queue.pop(task_id, None)
        self._placed.pop(task_id, None)
        if task is None or task.lifecycle_status.is_final:
            return
        if task.executor:
            since = task.update_date_time if task.lifecycle_status is S.ASSIGNING else None
            place = _Placed(task.executor, dict(task.resources), since, task.incarnation)
            self._placed[task_id] = place
        elif task.lifecycle_status is S.CREATED:
            self._queue[task_id] = task

    def _forget(self, waiting: list[Task]) -> None:
        """Drop notes about tasks no longer waiting; a re-queue resets the retry guard."""
        for gone in set(self._waiting_why) - self._queue.keys():
            del self._waiting_why[gone]
        self.retries.forget_resets(waiting)

    def _current_strategy(self) -> Strategy:
        kind = self.strategy
        if self._strategy.name is not kind:
            logger.info("dispatcher: strategy %s → %s", self._strategy.name.value, kind.value)
            self._strategy = make_strategy(kind, self._rng)
        return self._strategy

    # -- the steps of a pass ----------------------------------------------------------------

    def _undo_stale_assignments(self, now: int, due: list[float]) -> None:
        timeout_ms = int(self.assign_timeout * 1000)
        stale = []
        for task_id, placed in self._placed.items():
            if placed.assigning_since is None:
                continue
            left_ms = placed.assigning_since + timeout_ms - now
            if left_ms > 0:
                due.append(left_ms / 1000)
            else:
                stale.append((task_id, placed))
        for task_id, placed in stale:
            node_id = placed.node_id
            reason = (
                f"node {node_id} did not pick the task up within "
                f"{self.assign_timeout:g} s; dispatching it again"
            )
            moved = self.transitions.move(
                task_id,
                {S.ASSIGNING},
                S.CREATED,
                reason,
                expected_executor=node_id,
                expected_incarnation=placed.incarnation,
                executor=None,
            )
            if moved is None:
                # started meanwhile (its event is on the way), or changed: read it again
                self._learn(task_id, self.backends.store.get_task(task_id))
                continue
            self._learn(task_id, moved)
            self.counts["reassigned"] += 1
            logger.warning("task %s: %s", task_id, reason)

    def _saturated(self, slots: Mapping[str, NodeSlot]) -> bool:
        """Whether no node can take any task now: each is full or busy starting."""
        return all(slot.free <= 0 or slot.busy(self.max_assigning) for slot in slots.values())

    def _keep_deadline(self, task: Task, now: int, due: list[float]) -> bool:
        """Fail ``task`` if its deadline passed before it ever started (False); else make
        a pass come in time to fail it while it waits (True)."""
        if too_late_to_start(task, now):
            self._fail(task, "its deadline passed before it could be dispatched")
            return False
        if task.deadline_date_time is not None and task.attempts == 0:
            due.append((task.deadline_date_time - now) / 1000)
        return True

    def _consider(
        self,
        task: Task,
        now: int,
        slots: dict[str, NodeSlot],
        strategy: Strategy,
        lookup: Callable[[str], Task | None],
        due: list[float],
        held: list[str],
    ) -> _Pick | None:
        """Fail ``task``, leave it waiting, or return the node to assign it to."""
        if not self._keep_deadline(task, now, due):
            return None
        if task.not_before is not None and task.not_before > now:
            due.append((task.not_before - now) / 1000)
            return None
        deps = check_dependencies(task, lookup)
        if deps.readiness is Readiness.FAIL:
            self._fail(task, f"not started: {deps.reason}")
            return None
        if deps.readiness is Readiness.WAIT:
            return None  # a dependency ending wakes the dispatcher
        eligible = [slot for slot in slots.values() if slot.refusal(task) is None]
        if not eligible:
            self._note_waiting(task, slots)
            return None
        ready = [slot for slot in eligible if not slot.busy(self.max_assigning)]
        if not ready:
            held.append(task.id)  # a node's next start wakes the dispatcher
            return None
        chosen = slots[strategy.pick(ready).node_id]
        ready_ms = max(task.create_date_time, task.not_before or 0, deps.finished_at_ms)
        return _Pick(task, chosen, ready_ms)

    def _fail(self, task: Task, reason: str) -> None:
        self._queue.pop(task.id, None)
        if self.transitions.move(task.id, {S.CREATED}, S.FAILED, reason):
            self.counts["failed"] += 1
            logger.warning("task %s failed: %s", task.id, reason)

    def _assign_all(self, picks: list[_Pick], due: list[float]) -> None:
        """Make the pass's assignments, a batch per node, then file them.

        Each node's batch is one :meth:`~skalds.ports.store.Store.update_tasks` (a
        compare-and-set per task, one round trip on real services) and then a
        ``task.assign`` per task moved; up to ``assign_concurrency`` nodes' batches
        are made at once.

        Raises:
            Exception: the first error of a store or bus call (after filing every
                assignment that was made, so memory matches the store).
        """
        batches: dict[str, list[_Pick]] = {}
        for pick in picks:
            batches.setdefault(pick.slot.node_id, []).append(pick)
        if len(batches) == 1 or self.assign_concurrency == 1:
            outcomes: list[Future[list[str]]] = []
            for node_id, batch in batches.items():
                done: Future[list[str]] = Future()
                try:
                    done.set_result(self._claim(node_id, batch))
                except Exception as exc:
                    done.set_exception(exc)
                outcomes.append(done)
        else:
            if self._assigners is None:
                self._assigners = ThreadPoolExecutor(
                    self.assign_concurrency, thread_name_prefix="skalds-dispatcher-assign"
                )
            outcomes = [
                self._assigners.submit(self._claim, node_id, batch)
                for node_id, batch in batches.items()
            ]
        error: BaseException | None = None
        lost = False
        for (node_id, batch), outcome in zip(batches.items(), outcomes, strict=True):
            failure = outcome.exception()
            if failure is not None:
                error = error or failure
            moved = set() if failure is not None else set(outcome.result())
            since = now_ms()
            for pick in batch:
                task = pick.task
                self._queue.pop(task.id, None)
                if task.id not in moved:
                    lost = True  # changed meanwhile (cancelled, another dispatcher was first)
                    continue
                self._placed[task.id] = _Placed(
                    node_id, dict(task.resources), since, task.incarnation + 1
                )
                self._waiting_why.pop(task.id, None)
                self.counts["assigned"] += 1
                self._observe("observe_dispatch_latency", max(0, since - pick.ready_ms) / 1000)
                logger.debug("task %s assigned to %s", task.id, node_id)
            due.append(self.assign_timeout)  # to undo them in time if nobody picks them up
        if lost:
            self.wake()  # their places were kept free for nothing: another pass may fill them
        if error is not None:
            raise error

    def _claim(self, node_id: str, batch: list[_Pick]) -> list[str]:
        """Created → Assigning on ``node_id`` (compare-and-set each), then tell the node.

        Returns the ids of the tasks moved.
        """
        # Each placement is a new run of the task: its incarnation goes up by one, from
        # the one this dispatcher read (a task placed and re-queued meanwhile is not it).
        was = {pick.task.id: pick.task.incarnation for pick in batch}
        moved = self.backends.store.update_tasks(
            list(was),
            {"lifecycle_status": S.ASSIGNING, "executor": node_id, "incarnation": Increment(1)},
            expected_status={S.CREATED},
            expected_incarnations=was,
        )
        for task_id in moved:
            # Not waiting for the bus: an assignment whose event is lost is undone after
            # ``assign_timeout`` and dispatched again, whatever the publish returned.
            self.transitions.publish(
                Topic.TASK_ASSIGN,
                task_id,
                recipient=node_id,
                incarnation=was[task_id] + 1,
                wait=False,
            )
        return moved

    def _note_waiting(self, task: Task, slots: dict[str, NodeSlot]) -> None:
        """Log once (per reason) why a task cannot be placed, not at every pass."""
        reasons = [f"{s.node_id} {s.refusal(task)}" for s in slots.values()]
        why = "; ".join(reasons) if reasons else "no node-mode Skald is online"
        if self._waiting_why.get(task.id) != why:
            self._waiting_why[task.id] = why
            logger.info("task %s (%s) waits for a node: %s", task.id, task.class_name, why)


def _memo(
    read: Callable[[str], Task | None], known: dict[str, Task]
) -> Callable[[str], Task | None]:
    """A per-pass lookup: tasks already listed, then the store, each read at most once."""
    cache: dict[str, Task | None] = dict(known)

    def lookup(task_id: str) -> Task | None:
        if task_id not in cache:
            cache[task_id] = read(task_id)
        return cache[task_id]

    return lookup
