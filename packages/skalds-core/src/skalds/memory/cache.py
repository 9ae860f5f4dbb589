"""In-memory cache with per-key and per-field expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from skalds.ports.cache import Cache, CacheOp, Delete, HashDelete, HashSet, ListSet, Set

__all__ = ["MemoryCache"]

_SWEEP_EVERY = 1000


def _deadline(ttl: float | None) -> float | None:
    return None if ttl is None else time.monotonic() + ttl


def _alive(expires: float | None, now: float) -> bool:
    return expires is None or expires > now


@dataclass
class _Hash:
    fields: dict[str, tuple[str, float | None]] = field(default_factory=dict)


@dataclass
class _Value:
    value: str | list[str]
    expires: float | None


class MemoryCache(Cache):
    """Strings, lists and hashes in a dict, guarded by one lock. Expiry is checked on read."""

    def __init__(self) -> None:
        self._values: dict[str, _Value] = {}
        self._hashes: dict[str, _Hash] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def apply(self, ops: Sequence[CacheOp]) -> None:
        with self._lock:
            for op in ops:
                self._apply_one(op)
            self._writes += len(ops)
            if self._writes >= _SWEEP_EVERY:
                self._writes = 0
                self._sweep()

    def _apply_one(self, op: CacheOp) -> None:
        if isinstance(op, Set):
            self._hashes.pop(op.key, None)
            self._values[op.key] = _Value(op.value, _deadline(op.ttl))
        elif isinstance(op, ListSet):
            self._hashes.pop(op.key, None)
            self._values[op.key] = _Value(list(op.items), _deadline(op.ttl))
        elif isinstance(op, Delete):
            for key in op.keys:
                self._values.pop(key, None)
                self._hashes.pop(key, None)
        elif isinstance(op, HashSet):
            self._values.pop(op.key, None)
            h = self._hashes.setdefault(op.key, _Hash())
            expires = _deadline(op.ttl)
            for name, value in op.fields.items():
                h.fields[name] = (value, expires)
        elif isinstance(op, HashDelete):
            existing = self._hashes.get(op.key)
            if existing is not None:
                for name in op.fields:
                    existing.fields.pop(name, None)
        else:  # pragma: no cover - guarded by the type checker
            raise TypeError(f"unknown cache operation {op!r}")

    def _live_value(self, key: str) -> str | list[str] | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if not _alive(entry.expires, time.monotonic()):
            del self._values[key]
            return None
        return entry.value

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._live_value(key)
        return value if isinstance(value, str) else None

    def list_get(self, key: str) -> list[str]:
        with self._lock:
            value = self._live_value(key)
        return list(value) if isinstance(value, list) else []

    def hash_get_all(self, key: str) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            h = self._hashes.get(key)
            if h is None:
                return {}
            return {k: v for k, (v, exp) in h.fields.items() if _alive(exp, now)}

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._values.items() if not _alive(v.expires, now)]:
            del self._values[key]
        for key, h in list(self._hashes.items()):
            for name in [n for n, (_, exp) in h.fields.items() if not _alive(exp, now)]:
                del h.fields[name]
            if not h.fields:
                del self._hashes[key]
