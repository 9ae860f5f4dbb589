"""The node's work queue: per-task order, different tasks in parallel.

A node's store writes and bus publishes (start a task, record its end, tell the
controllers) are slow on real services — a few milliseconds each — and used to run
on one thread, so a node could start or finish at most a few dozen tasks a second.
:class:`LaneExecutor` runs them on several *lanes* (one thread each): everything
about one task goes to the lane its id hashes to, so it still happens in order
(assign before cancel, start before end), while other tasks move on the other lanes.

Work that touches many tasks at once (the reconcile pass, an edge node's YAML reload)
runs *exclusively*: :meth:`LaneExecutor.submit` waits until every lane is idle, runs
it, then lets the lanes go on — the single-thread behaviour such code was written for.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DEFAULT_LANES", "LaneExecutor"]

DEFAULT_LANES = 4
"""Enough to overlap store round trips; more would only contend for the GIL."""

P = ParamSpec("P")
T = TypeVar("T")


class LaneExecutor(Executor):
    """``lanes`` serial threads: :meth:`submit_for` orders by key, :meth:`submit` is exclusive.

    Args:
        lanes: how many threads (at least 1; 1 behaves as a plain serial executor).
        name: thread name prefix (shows in logs and profilers).
    """

    def __init__(self, lanes: int = DEFAULT_LANES, *, name: str = "skalds-lane") -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self._lanes = [
            ThreadPoolExecutor(1, thread_name_prefix=f"{name}-{i}") for i in range(lanes)
        ]
        # Exclusive work enqueues one item on every lane; doing that under a lock
        # keeps two exclusive submissions in the same order on all lanes (no deadlock).
        self._order = threading.Lock()
        self._barriers: set[threading.Barrier] = set()

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def submit_for(
        self, key: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Run ``fn`` after everything submitted before for the same ``key``."""
        lane = self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]
        with self._order:
            return lane.submit(fn, *args, **kwargs)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn`` alone: after the work queued on every lane, before anything later."""
        if len(self._lanes) == 1:
            return self._lanes[0].submit(fn, *args, **kwargs)
        arrived = threading.Barrier(len(self._lanes))
        finished = threading.Event()

        def park() -> None:
            arrived.wait()
            finished.wait()

        def lead() -> T:
            try:
                arrived.wait()  # BrokenBarrierError: shut down with its parks cancelled
                return fn(*args, **kwargs)
            finally:
                finished.set()
                with self._order:
                    self._barriers.discard(arrived)

        with self._order:
            self._barriers.add(arrived)
            for other in self._lanes[1:]:
                other.submit(park)
            return self._lanes[0].submit(lead)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; with ``wait``, return once every lane has drained.

        With ``cancel_futures``, queued work is dropped and exclusive work still
        waiting for the lanes fails with ``BrokenBarrierError``.
        """
        with self._order:
            for lane in self._lanes:
                lane.shutdown(wait=False, cancel_futures=cancel_futures)
            if cancel_futures:
                for barrier in self._barriers:
                    barrier.abort()
        if wait:
            for lane in self._lanes:
                lane.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<LaneExecutor lanes={len(self._lanes)}>"
