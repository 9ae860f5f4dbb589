"""Skalds controller adapter.

The adapter's hook implementations arrive with the adapters issue; until then the
package is installable but registers nothing, so the core keeps asking for the extra.
"""

from __future__ import annotations

__all__: list[str] = []
