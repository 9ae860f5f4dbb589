"""The seed API ``MongoConfig`` / ``MongoProxy`` (re-exported as ``skalds.proxy.mongo``).

Scripts written for Skalds build ``MongoProxy(mongo_config=MongoConfig(host=...))``
and hand it to ``TaskRepository``, or reach ``mongo_proxy.db.tasks`` directly; both
keep working, and the repository goes through :attr:`MongoProxy.store`, so its
status changes are the store's atomic compare-and-set.
"""

from __future__ import annotations

import os
from typing import Any

import pymongo
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo.database import Database

from skalds_mongo._connection import (
    DEFAULT_DB_NAME,
    DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    address_of_url,
    database_of_url,
)
from skalds_mongo.store import MongoStore

__all__ = ["MongoConfig", "MongoProxy"]

DEFAULT_HOST = "mongodb://root:root@localhost:27017/"


def _default_db_name() -> str:
    return os.environ.get("DB_NAME") or DEFAULT_DB_NAME


class MongoConfig(BaseModel):
    """Where the tasks live: a MongoDB URL and a database name."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default=DEFAULT_HOST, description="mongodb:// or mongodb+srv:// URL")
    db_name: str = Field(
        default_factory=_default_db_name,
        min_length=1,
        description="database; default: the URL's path, else DB_NAME, else skalds",
    )
    server_selection_timeout_ms: int = Field(
        default=DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
        gt=0,
        description="how long a call waits for an unreachable server",
    )

    @field_validator("host")
    @classmethod
    def _default_when_blank(cls, value: str) -> str:
        # Earlier Skalds treated an empty host as "the default server".
        return value.strip() or DEFAULT_HOST

    def resolved_db_name(self) -> str:
        """Return the database: ``db_name`` if given, else the URL's, else the default."""
        if "db_name" in self.model_fields_set:
            return self.db_name
        return database_of_url(self.host) or self.db_name


class MongoProxy:
    """A MongoDB connection for scripts: ``.client``, ``.db`` and the task ``.store``.

    Connecting happens on first use; an unreachable server raises
    ``BackendUnavailableError`` naming its address, a refused login ``ConfigError``.
    """

    def __init__(self, mongo_config: MongoConfig | None = None) -> None:
        """Prepare the client for ``mongo_config`` (default: ``MongoConfig()``)."""
        config = mongo_config or MongoConfig()
        self.mongo_config = config
        self.host = address_of_url(config.host)
        self.db_name = config.resolved_db_name()
        self.store = MongoStore(
            config.host,
            db_name=self.db_name,
            server_selection_timeout_ms=config.server_selection_timeout_ms,
        )

    def __repr__(self) -> str:
        return f"MongoProxy({self.host}, db={self.db_name!r})"

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        """The pymongo client."""
        return self.store.client

    @property
    def db(self) -> Database[dict[str, Any]]:
        """The pymongo database (``mongo_proxy.db.tasks`` is the task collection)."""
        return self.store.db

    def init_db_index(self, is_block: bool = True) -> None:
        """Create the task indexes now (earlier Skalds API; ``is_block`` is ignored).

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        self.store.ensure_indexes()

    def close(self) -> None:
        """Close the connections."""
        self.store.close()
