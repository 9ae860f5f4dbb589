"""Node configuration: constructor arguments, environment variables and ``.env``.

Every field can be given to ``SkaldConfig(...)`` by name or set in the environment
under its upper-case name (``SKALD_MODE``, ``SKALD_ID``, ``YAML_FILE``,
``KAFKA_HOST``...). Constructor arguments win over the environment, which wins over
``.env``. Backends are picked by URL: set ``SKALDS_EVENT_BUS``/``SKALDS_CACHE``/
``SKALDS_STORE`` directly, or the seed's host fields, which are turned into URLs.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["SkaldConfig", "SkaldMode", "parse_resources"]

SkaldMode = Literal["edge", "node", "single_process"]
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
_RESOURCES_EXAMPLE = 'e.g. gpu=2,ram_gb=64 or {"gpu": 2}'


def parse_resources(value: Any) -> dict[str, float]:
    """Resources a node offers, from ``gpu=2,ram_gb=64``, JSON or a mapping.

    Raises:
        ValueError: not that form, a name that is empty or has spaces, or an amount
            that is not a finite number >= 0 (the message says which).
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"resources {text!r}: not valid JSON ({exc})") from None
        else:
            value = dict(_resource_pair(part) for part in text.split(",") if part.strip())
    if not isinstance(value, dict):
        raise ValueError(f"resources must be NAME=AMOUNT pairs, {_RESOURCES_EXAMPLE}")
    resources: dict[str, float] = {}
    for name, amount in value.items():
        key = str(name).strip()
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"resource name {name!r} must be non-empty, without spaces")
        try:
            number = float(amount)
        except (TypeError, ValueError):
            raise ValueError(f"resource {key}: amount {amount!r} is not a number") from None
        if isinstance(amount, bool) or not math.isfinite(number) or number < 0:
            raise ValueError(f"resource {key}: amount {amount!r} must be a number >= 0")
        resources[key] = number
    return resources


def _resource_pair(part: str) -> tuple[str, str]:
    name, sep, amount = part.partition("=")
    if not sep:
        raise ValueError(f"resources: {part.strip()!r} is not NAME=AMOUNT, {_RESOURCES_EXAMPLE}")
    return name.strip(), amount.strip()


def _url_field(env: str, description: str) -> str | None:
    return Field(
        default=None,
        validation_alias=AliasChoices(env, env.lower()),
        description=description,
    )


class SkaldConfig(BaseSettings):
    """Settings of one Skald node (and of the tools that talk to the same backends)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- identity and mode (seed fields) ---
    skald_mode: SkaldMode = "node"
    skald_id: str = Field(default_factory=lambda: f"skalds-{uuid.uuid4().hex[:8]}")
    yaml_file: str | None = None

    # --- logging (seed fields) ---
    log_level: str = "INFO"
    log_path: str = "logs"
    log_split_with_worker_id: bool = False
    log_rotation_mb: int = Field(default=10, ge=1)
    log_retention: int = Field(default=3, ge=0, description="rotated files kept per worker")

    # --- services (seed fields; a host selects the real adapter) ---
    redis_host: str | None = None
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = None
    redis_username: str | None = None
    redis_ssl: bool = False
    redis_ssl_ca_file: str | None = None
    kafka_host: str | None = None
    kafka_port: int = 9092
    kafka_username: str | None = None
    kafka_password: str | None = None
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_ssl_ca_file: str | None = None
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_dead_letter: bool = Field(
        default=False, description="copy messages that fail handling to skalds.dead-letter"
    )
    kafka_linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description=(
            "milliseconds a published event waits for others to share its request "
            "(librdkafka linger.ms): fewer requests under load, a lone event that much "
            "later; 0 sends each at once"
        ),
    )
    mongo_host: str | None = None
    db_name: str = "skalds"

    # --- backend URLs (override the host fields) ---
    event_bus_url: str | None = _url_field("SKALDS_EVENT_BUS", "event bus URL")
    cache_url: str | None = _url_field("SKALDS_CACHE", "cache URL")
    store_url: str | None = _url_field("SKALDS_STORE", "store URL")
    runtime_url: str = Field(
        default="local://", validation_alias=AliasChoices("SKALDS_RUNTIME", "skalds_runtime")
    )

    # --- supervision ---
    fork_server: Literal["auto", "fresh", "copy"] = Field(
        default="auto",
        description="what task processes are forked from: 'fresh' a new interpreter that "
        "imports only the worker classes (cheaper tasks; module state the main script "
        "set at run time is not seen), 'copy' a fork of the node, 'auto' fresh when "
        "every worker class can be imported by name",
    )
    max_workers: int = Field(default=500, ge=1, description="tasks this node runs at once")
    cancel_grace_seconds: float = Field(default=5.0, ge=0)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    node_ttl_seconds: float = Field(
        default=2.5,
        gt=0,
        description="life of the node's registry entry: a dead node counts as gone this "
        "long after its last report (nodes report often enough to miss 4 in a row)",
    )
    task_ttl_seconds: float = Field(default=10.0, gt=0)
    reconcile_interval: float = Field(
        default=30.0,
        gt=0,
        description="seconds between the node's comparisons with the store (what events "
        "missed: starts, stops, pauses, attachments)",
    )
    run_dir: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SKALDS_RUN_DIR", "skalds_run_dir", "run_dir"),
        description="where the node keeps its lock on this host (default: "
        "$XDG_RUNTIME_DIR/skalds, else <temp dir>/skalds-<uid>)",
    )
    load_entry_points: bool = True
    resources: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("SKALD_RESOURCES", "skald_resources", "resources"),
        description="what this node offers to tasks that ask for resources "
        "(SKALD_RESOURCES=gpu=2,ram_gb=64 or JSON); none when unset",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(_LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("resources", mode="before")
    @classmethod
    def _parse_resources(cls, value: Any) -> dict[str, float]:
        return parse_resources(value)

    @field_validator("skald_id")
    @classmethod
    def _usable_id(cls, value: str) -> str:
        if not value or any(c in value for c in " :/{}\n\t"):
            raise ValueError(
                f"skald_id {value!r} must be non-empty, without spaces, ':', '/' or braces"
            )
        return value

    @property
    def report_interval(self) -> float:
        """Seconds between node reports: ``heartbeat_interval``, or shorter so that the
        registry entry is refreshed at least 5 times per ``node_ttl_seconds``.

        The TTL decides how soon a dead node's tasks move elsewhere; reporting this
        often lets it stay short (2.5 s by default) while a node may still stall for
        4 reports (2 s) before it counts as gone.
        """
        return min(self.heartbeat_interval, self.node_ttl_seconds / 5)

    def resolved_event_bus_url(self) -> str:
        """Return the event bus URL: explicit, else from ``kafka_host``, else ``memory://``."""
        if self.event_bus_url:
            return self.event_bus_url
        if self.kafka_host:
            return f"kafka://{self.kafka_host}:{self.kafka_port}"
        return "memory://"

    def resolved_cache_url(self) -> str:
        """Return the cache URL: explicit, else from ``redis_host``, else ``memory://``."""
        if self.cache_url:
            return self.cache_url
        if self.redis_host:
            auth = ""
            if self.redis_password:
                user = quote(self.redis_username or "", safe="")
                auth = f"{user}:{quote(self.redis_password, safe='')}@"
            scheme = "rediss" if self.redis_ssl else "redis"
            return f"{scheme}://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"
        return "memory://"

    def resolved_store_url(self) -> str:
        """Return the store URL: explicit, else ``mongo_host`` (a mongodb:// URL), else memory."""
        if self.store_url:
            return self.store_url
        if self.mongo_host:
            host = self.mongo_host
            return host if "://" in host else f"mongodb://{host}"
        return "memory://"
