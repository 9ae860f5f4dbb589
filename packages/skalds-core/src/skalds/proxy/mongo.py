"""Seed import path ``skalds.proxy.mongo``: re-exported from the ``skalds-mongo`` adapter.

Without the adapter installed, importing this module raises an ``ImportError`` that
says what to install (``pip install "skalds[mongo]"``).
"""

from __future__ import annotations

from skalds.errors import MissingExtraError

try:
    from skalds_mongo.proxy import MongoConfig, MongoProxy
except ImportError as exc:  # the adapter (or its client library) is not installed
    raise MissingExtraError("MongoDB", "mongo") from exc

__all__ = ["MongoConfig", "MongoProxy"]
