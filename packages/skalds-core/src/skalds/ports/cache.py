"""Cache port: short-lived values with TTLs (heartbeats, node registry, live status).

Writes are batched as a list of operations so that a node's once-a-second report
is one round trip on a networked cache (a Redis pipeline).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Cache", "CacheOp", "Delete", "HashDelete", "HashSet", "ListSet", "Set"]


@dataclass(frozen=True)
class Set:
    """Set ``key`` to ``value``; expire it after ``ttl`` seconds when given."""

    key: str
    value: str
    ttl: float | None = None


@dataclass(frozen=True)
class Delete:
    """Delete whole keys (strings, hashes or lists)."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class HashSet:
    """Set fields of hash ``key``; ``ttl`` expires each field on its own."""

    key: str
    fields: Mapping[str, str]
    ttl: float | None = None


@dataclass(frozen=True)
class HashDelete:
    """Remove fields from hash ``key``."""

    key: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ListSet:
    """Replace list ``key`` with ``items``; expire the whole list after ``ttl``."""

    key: str
    items: Sequence[str]
    ttl: float | None = None


CacheOp = Set | Delete | HashSet | HashDelete | ListSet


class Cache(abc.ABC):
    """Key/value, hash and list storage with expiry. Expired data is never returned."""

    @abc.abstractmethod
    def apply(self, ops: Sequence[CacheOp]) -> None:
        """Apply the writes in order (in one round trip where the backend can)."""

    @abc.abstractmethod
    def get(self, key: str) -> str | None:
        """Return a string value, ``None`` when missing or expired."""

    @abc.abstractmethod
    def hash_get_all(self, key: str) -> dict[str, str]:
        """Return the live fields of a hash (``{}`` when missing)."""

    @abc.abstractmethod
    def list_get(self, key: str) -> list[str]:
        """Return a list's items (``[]`` when missing or expired)."""

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Shortcut for ``apply([Set(key, value, ttl)])``."""
        self.apply([Set(key, value, ttl)])

    def delete(self, *keys: str) -> None:
        """Shortcut for ``apply([Delete(keys)])``."""
        self.apply([Delete(tuple(keys))])

    def ping(self) -> bool:
        """Return True when the backend answers (default: always)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional lifecycle
        """Release connections."""
