"""Plain-text tables and short times for people reading a terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = ["age", "render_table"]

_MAX_CELL = 40


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell (long cells cut at 40 characters with "…")."""
    cells = [[_fit("" if c is None else str(c), _MAX_CELL) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def age(ms: int | None, now_ms: int | None = None) -> str:
    """How long ago ``ms`` (epoch milliseconds) was: ``4s ago``, ``3m ago``, ``2d ago``."""
    if not ms:
        return "-"
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    seconds = max(0, (now - int(ms)) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
