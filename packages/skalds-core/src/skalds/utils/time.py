"""Times in Skalds are integer milliseconds since the epoch, as the seeds store them."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Return the current wall-clock time in integer milliseconds."""
    return int(time.time() * 1000)
