"""Fixtures for the MongoDB adapter's contract runs (FerretDB on 127.0.0.1:27017).

``mongo_store`` is a :class:`~skalds_mongo.store.MongoStore` on a database of its own
(random name, dropped at the end of the session), so runs never touch anyone's data.
It decides its write locks from the server (FerretDB: per-task locks).
``mongo_atomic_store`` is the same without locks: the server's own atomic
find-and-modify decides each compare-and-set, the path real MongoDB takes. The
FerretDB ``scripts/services`` builds applies writes atomically (its
``atomic-writes.patch``); a stock FerretDB 1.x would fail that run's concurrency tests.

The URL is ``SKALDS_TEST_MONGO_URL`` when set. Otherwise the seeds' own URL
(``mongodb://root:root@...``) is tried first, which authenticates when FerretDB runs
with ``SKALDS_FERRETDB_AUTH=root:root``; a FerretDB without authentication refuses
that login (SCRAM), and then the URL without credentials is used.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_service

BACKEND_NAMES: list[tuple[str, str]] = [("store", "mongo"), ("store", "mongo_atomic")]

MONGO_ADDRESS = ("127.0.0.1", 27017)
SEED_URL = "mongodb://root:root@127.0.0.1:27017/"
PLAIN_URL = "mongodb://127.0.0.1:27017/"

__all__ = [
    "BACKEND_NAMES",
    "mongo_atomic_store",
    "mongo_db_name",
    "mongo_store",
    "mongo_url",
    "require_mongo",
]


def _port_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(MONGO_ADDRESS) == 0


@functools.cache
def _working_url() -> str | None:
    """Return the first URL that may write on the server, ``None`` when none does."""
    explicit = os.environ.get("SKALDS_TEST_MONGO_URL")
    candidates = [explicit] if explicit else [SEED_URL, PLAIN_URL]
    import pymongo

    for url in candidates:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=2000
        )
        try:
            client["skalds_probe"].list_collection_names()
            return url
        except pymongo.errors.PyMongoError:
            continue
        finally:
            client.close()
    return None


def require_mongo() -> str:
    """Return the URL of the test FerretDB; skip (fail under CI) when it is not there."""
    where = f"{MONGO_ADDRESS[0]}:{MONGO_ADDRESS[1]}"
    require_service("FerretDB", _port_open(), where)
    url = _working_url()
    require_service("FerretDB (a URL that may write)", url is not None, where)
    assert url is not None
    return url


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return require_mongo()


@pytest.fixture(scope="session")
def mongo_db_name(mongo_url: str) -> Iterator[str]:
    """A database only this test session uses; dropped at the end."""
    import pymongo

    name = f"skalds_test_{uuid.uuid4().hex[:10]}"
    yield name
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_url, serverSelectionTimeoutMS=2000
    )
    try:
        client.drop_database(name)
    except pymongo.errors.PyMongoError:
        pass
    finally:
        client.close()


@pytest.fixture
def mongo_store(mongo_url: str, mongo_db_name: str) -> Iterator[Any]:
    from skalds_mongo.store import MongoStore

    store = MongoStore(mongo_url, db_name=mongo_db_name, server_selection_timeout_ms=2000)
    yield store
    store.close()


@pytest.fixture
def mongo_atomic_store(mongo_url: str, mongo_db_name: str) -> Iterator[Any]:
    from skalds_mongo.store import MongoStore

    store = MongoStore(
        mongo_url, db_name=mongo_db_name, server_selection_timeout_ms=2000, write_locks=False
    )
    assert not store.uses_write_locks()
    yield store
    store.close()
