"""In-memory backends: the embedded default, thread-safe, same semantics as the real ones.

They are real backends (the contract suites run against them), not mocks: a single
process running ``skalds up`` uses them for everything.
"""

from skalds.memory.cache import MemoryCache
from skalds.memory.event_bus import MemoryEventBus
from skalds.memory.store import MemoryStore

__all__ = ["MemoryCache", "MemoryEventBus", "MemoryStore"]
