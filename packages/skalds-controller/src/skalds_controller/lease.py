"""A leader lease in the cache: among controllers, one dispatches (or acts as monitor).

The lease is one cache key holding the holder's id with a TTL, renewed a few times
per TTL. The cache port has no atomic "set if absent", so taking a free lease
follows Fischer's mutual exclusion: write your id, wait a moment longer than a
racing writer can take between its read and its write (a cache round trip), read
it back, and hold the lease only if your id is still there. Two controllers racing
for a free lease therefore agree on the last writer.

This is a guard against duplicated work, not the guarantee of exactly-once: every
status change the holder makes is still a compare-and-set in the store, so even two
controllers that both believed they lead (a holder frozen for longer than the TTL)
never assign one task twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from skalds.ports.cache import Cache
from skalds.utils.logging import logger

__all__ = ["Lease", "lease_key"]


def lease_key(name: str) -> str:
    """The cache key of lease ``name`` (value: the holder's id)."""
    return f"skalds:controller:lease:{name}"


class Lease:
    """One controller's side of a named lease, kept by a small thread.

    Args:
        cache: the shared cache.
        name: what the lease is for (``dispatcher``, ``monitor``).
        holder: this controller's id.
        ttl: seconds the lease lives without renewal: the longest a dead leader
            blocks the others.
        settle: the Fischer wait after writing a free lease, before reading it back.
    """

    def __init__(
        self,
        cache: Cache,
        name: str,
        holder: str,
        *,
        ttl: float = 3.0,
        settle: float = 0.1,
    ) -> None:
        if settle * 2 >= ttl:
            raise ValueError(f"lease settle time {settle} s must be well under its TTL {ttl} s")
        self.cache = cache
        self.name = name
        self.holder = holder
        self.key = lease_key(name)
        self.ttl = ttl
        self.settle = settle
        self._valid_until = 0.0
        self._listeners: list[Callable[[bool], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_held = False
        self._failing = False

    @property
    def held(self) -> bool:
        """True while this controller holds the lease (checked against a local deadline)."""
        return time.monotonic() < self._valid_until

    def current_holder(self) -> str | None:
        """Who holds the lease as the cache says now (``None``: nobody, or no answer)."""
        try:
            return self.cache.get(self.key)
        except Exception:
            return None

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(held)`` (on the lease thread) when this controller gains or loses it."""
        self._listeners.append(listener)

    def refresh(self) -> bool:
        """Take the lease when it is free, renew it when it is ours; return whether we hold it.

        A cache that does not answer means "not held": nobody else can take it over
        through that cache either, and a leader that cannot see the cache cannot
        dispatch anyway.
        """
        try:
            held = self._refresh()
        except Exception as exc:
            if not self._failing:
                logger.warning("lease %s: cache unavailable (%s); not leading", self.name, exc)
            self._failing = True
            held = False
        else:
            self._failing = False
        if not held:
            self._valid_until = 0.0
        return held

    def _refresh(self) -> bool:
        current = self.cache.get(self.key)
        if current is not None and current != self.holder:
            return False
        started = time.monotonic()
        self.cache.set(self.key, self.holder, self.ttl)
        # Fischer: a racing controller that also saw the lease free has written by now.
        if current is None and (
            self._stop.wait(self.settle) or self.cache.get(self.key) != self.holder
        ):
            return False
        # The key lives until at least started + ttl on the cache's clock; stop
        # trusting it a little earlier so a slow renewal cannot overlap a successor.
        self._valid_until = started + self.ttl - self.settle * 2
        return True

    def start(self) -> None:
        """Try to take the lease at once, then keep it (or keep trying), on a thread."""
        self._thread = threading.Thread(
            target=self._loop, name=f"skalds-lease-{self.name}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        self._tick()
        while not self._stop.wait(self.ttl / 4):
            self._tick()

    def _tick(self) -> None:
        held = self.refresh()
        if held != self._was_held:
            self._was_held = held
            logger.info(
                "controller %s %s the %s lease",
                self.holder,
                "took" if held else "lost",
                self.name,
            )
            for listener in list(self._listeners):
                try:
                    listener(held)
                except Exception:
                    logger.exception("a %s lease listener failed", self.name)

    def stop(self) -> None:
        """Stop renewing and hand the lease back, so another controller takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            self._valid_until = 0.0
            try:
                # Only while our local deadline had not passed: the key cannot have
                # expired and been taken by someone else, so this deletes our own lease.
                if self.cache.get(self.key) == self.holder:
                    self.cache.delete(self.key)
            except Exception as exc:
                logger.warning("lease %s: could not hand back (%s); it expires", self.name, exc)
