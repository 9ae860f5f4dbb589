"""Per-task write locks, for MongoDB-compatible servers whose updates are not atomic.

FerretDB 1.x (the SQLite backend) runs ``findAndModify`` and ``update`` as "read the
matching document, then write the whole document back by ``_id``": two writers can
both match the same expected status and both win a compare-and-set, and two writers
of different fields can lose one change. An insert whose ``_id`` is taken *is*
refused atomically there, so a lock is a document ``{_id: task id, owner, expiresAt}``
in a side collection: whoever inserts it may write the task, then deletes it.

A lock whose holder died expires after its lease (client clocks must agree within
about a second; no TTL index is needed, FerretDB has none). Locks are only used
where they are needed: MongoDB itself updates a document atomically.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_mongo.errors import TaskLockTimeoutError

__all__ = ["TaskWriteLocks"]

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.05
_SAFETY_MARGIN = 1.0  # seconds of the lease never used, for clock differences


class TaskWriteLocks:
    """Mutual exclusion per task id across processes, through one collection."""

    def __init__(
        self,
        collection: Collection[dict[str, Any]],
        *,
        lease_seconds: float = 10.0,
        wait_seconds: float = 15.0,
    ) -> None:
        """Keep the locks in ``collection``.

        Args:
            collection: where the lock documents live (holds only locks being held).
            lease_seconds: how long a lock stays valid; a holder that died is
                overtaken after this.
            wait_seconds: how long to wait for a lock before giving up; longer than
                the lease, so a lock left by a dead holder is overtaken in one call.
        """
        self._locks = collection
        self._lease_ms = int(lease_seconds * 1000)
        self._wait = wait_seconds
        # Locks this process could not release (server gone at that moment): they
        # are known to be free, so they are taken over without waiting for the lease.
        self._orphans: set[str] = set()
        self._orphans_lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, task_id: str) -> Iterator[float]:
        """Hold the write lock of ``task_id``; yield the seconds the lease has left.

        Raises:
            TaskLockTimeoutError: another writer kept the lock for ``wait_seconds``.
            pymongo.errors.PyMongoError: the server failed (the caller translates it).
        """
        token, acquired = self._acquire(task_id)
        try:
            elapsed = time.monotonic() - acquired
            yield max(0.1, self._lease_ms / 1000 - elapsed - _SAFETY_MARGIN)
        finally:
            self._release(task_id, token)

    def _acquire(self, task_id: str) -> tuple[str, float]:
        token = uuid.uuid4().hex
        started = time.monotonic()
        delay = _FIRST_DELAY
        while True:
            now = now_ms()
            try:
                self._locks.insert_one(
                    {"_id": task_id, "owner": token, "expiresAt": now + self._lease_ms}
                )
                return token, time.monotonic()
            except DuplicateKeyError:
                pass
            holder = self._locks.find_one({"_id": task_id})
            if holder is not None and self._is_free(holder, now):
                self._take_over(task_id, holder)
                continue
            if holder is None:
                continue  # released meanwhile: try again at once
            waited = time.monotonic() - started
            if waited >= self._wait:
                raise TaskLockTimeoutError(task_id, waited)
            # Waiting for another writer's few milliseconds: short, jittered sleeps.
            time.sleep(min(delay, self._wait - waited) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_DELAY)

    def _is_free(self, holder: Mapping[str, Any], now: int) -> bool:
        expires = holder.get("expiresAt")
        with self._orphans_lock:
            if holder.get("owner") in self._orphans:
                return True
        return not isinstance(expires, int) or expires < now

    def _take_over(self, task_id: str, holder: Mapping[str, Any]) -> None:
        owner = holder.get("owner")
        with self._orphans_lock:
            ours = owner in self._orphans
            self._orphans.discard(str(owner))
        if not ours:
            logger.warning(
                "task %r: overtaking an expired MongoDB write lock (holder %s)", task_id, owner
            )
        # Only that holder's lock: a lock someone took over meanwhile stays.
        self._locks.delete_one({"_id": task_id, "owner": owner})

    def _release(self, task_id: str, token: str) -> None:
        try:
            self._locks.delete_one({"_id": task_id, "owner": token})
        except PyMongoError as exc:
            with self._orphans_lock:
                self._orphans.add(token)
            logger.warning(
                "task %r: could not release its MongoDB write lock (%s); it is taken over "
                "on next use here, or after its lease elsewhere",
                task_id,
                type(exc).__name__,
            )
