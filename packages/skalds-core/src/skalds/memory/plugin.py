"""The in-memory backends as a default plugin (``trylast``: adapters answer first).

``memory://`` URLs with the same name share one instance within a process
(``memory://`` and ``memory://shared`` are different instances), so a controller and a
node started in one process (``skalds up``) talk to each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from skalds.hookspecs import hookimpl
from skalds.memory.cache import MemoryCache
from skalds.memory.event_bus import MemoryEventBus
from skalds.memory.store import MemoryStore

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig

_B = TypeVar("_B")


class MemoryBackends:
    """Named in-memory backend instances of one plugin manager (never global)."""

    def __init__(self) -> None:
        self._instances: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, url: str, factory: Callable[[], _B]) -> _B | None:
        parts = urlsplit(url)
        if parts.scheme != "memory":
            return None
        name = parts.netloc + parts.path
        with self._lock:
            instance = self._instances.get((kind, name))
            if instance is None:
                instance = self._instances[(kind, name)] = factory()
        return instance  # type: ignore[return-value]

    @hookimpl(trylast=True)
    def skalds_make_event_bus(self, url: str) -> MemoryEventBus | None:
        return self.get("bus", url, MemoryEventBus)

    @hookimpl(trylast=True)
    def skalds_make_cache(self, url: str) -> MemoryCache | None:
        return self.get("cache", url, MemoryCache)

    @hookimpl(trylast=True)
    def skalds_make_store(self, url: str, config: SkaldConfig) -> MemoryStore | None:
        return self.get("store", url, MemoryStore)


def make_plugin() -> MemoryBackends:
    """Return a fresh set of in-memory backends for one plugin manager."""
    return MemoryBackends()
