"""Fixtures for the kafka adapter's contract runs (filled in by the adapter work).

Adds nothing until the adapter lands; see tests/contract/conftest.py.
"""

from __future__ import annotations

BACKEND_NAMES: list[tuple[str, str]] = []
