"""Controller settings: the node's backend settings plus the API's own.

Everything comes from arguments, environment variables or ``.env`` like
:class:`~skalds.config.skald_config.SkaldConfig` (which this extends, so
``REDIS_HOST``, ``KAFKA_HOST``, ``MONGO_HOST``, ``SKALDS_STORE``... mean the same here).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, Field

from skalds.config.skald_config import SkaldConfig

__all__ = ["ControllerMode", "ControllerSettings", "DispatchStrategy"]


class ControllerMode(StrEnum):
    """What a controller process runs; each mode includes the ones before it."""

    CONTROLLER = "CONTROLLER"
    """The REST API only."""
    MONITOR = "MONITOR"
    """+ the monitor (node liveness, stalled workers), live events and the dashboard."""
    DISPATCHER = "DISPATCHER"
    """+ the dispatcher (assigns tasks to nodes)."""


class DispatchStrategy(StrEnum):
    """How the dispatcher picks a node among the eligible ones."""

    LEAST_TASKS = "LEAST_TASKS"
    ROUND_ROBIN = "ROUND_ROBIN"
    RANDOM = "RANDOM"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ControllerSettings(SkaldConfig):
    """Settings of one System Controller process."""

    mode: ControllerMode = Field(
        default=ControllerMode.DISPATCHER, validation_alias=_env("SYSTEM_CONTROLLER_MODE")
    )
    host: str = Field(default="127.0.0.1", validation_alias=_env("SYSTEM_CONTROLLER_HOST"))
    port: int = Field(default=8000, ge=0, le=65535, validation_alias=_env("SYSTEM_CONTROLLER_PORT"))
    dispatcher_strategy: DispatchStrategy = Field(
        default=DispatchStrategy.LEAST_TASKS, validation_alias=_env("DISPATCHER_STRATEGY")
    )
    api_token: str | None = Field(default=None, validation_alias=_env("SKALDS_API_TOKEN"))
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias=_env("SKALDS_CORS_ORIGINS")
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, validation_alias=_env("SKALDS_MAX_BODY_BYTES")
    )
    controller_id: str | None = Field(default=None, validation_alias=_env("SYSTEM_CONTROLLER_ID"))

    # --- dispatcher and monitor tunables (seconds) ---
    dispatcher_assign_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias=_env("DISPATCHER_ASSIGN_TIMEOUT"),
        description="an assignment no node picked up within this goes back to Created",
    )
    dispatcher_reconcile_interval: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("DISPATCHER_RECONCILE_INTERVAL"),
        description="longest time between two dispatch passes when no event wakes it",
    )
    dispatcher_assign_concurrency: int = Field(
        default=8,
        ge=1,
        validation_alias=_env("DISPATCHER_ASSIGN_CONCURRENCY"),
        description=(
            "nodes whose assignments one pass makes at once (each node's batch is one "
            "store round trip for its compare-and-sets, then a publish per task); "
            "1 makes them node by node"
        ),
    )
    dispatcher_max_assigning_per_node: int = Field(
        default=32,
        ge=1,
        validation_alias=_env("DISPATCHER_MAX_ASSIGNING_PER_NODE"),
        description=(
            "assignments a node may have not yet started; more tasks wait in Created, "
            "so a burst queues in the dispatcher instead of in one node's backlog"
        ),
    )
    dispatcher_place_on_create: bool = Field(
        default=True,
        validation_alias=_env("DISPATCHER_PLACE_ON_CREATE"),
        description=(
            "the leading dispatcher places a task as the API creates it when nothing "
            "waits ahead of it (stored Assigning on its node: one write and one event "
            "fewer than a dispatch pass); false leaves every task to the passes"
        ),
    )
    retry_sweep_interval: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("DISPATCHER_RETRY_SWEEP_INTERVAL"),
        description="time between scans of Failed tasks for retries whose event was missed",
    )
    monitor_poll_interval: float = Field(
        default=0.2,
        gt=0,
        validation_alias=_env("MONITOR_POLL_INTERVAL"),
        description="time between looks at the node registry (how soon a lost node is seen)",
    )
    monitor_stall_check_interval: float = Field(
        default=1.0,
        gt=0,
        validation_alias=_env("MONITOR_STALL_CHECK_INTERVAL"),
        description="time between looks at worker heartbeats; a worker is stalled when two "
        "looks in a row find its heartbeat key (TASK_TTL_SECONDS) expired",
    )
    monitor_orphan_sweep_interval: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("MONITOR_ORPHAN_SWEEP_INTERVAL"),
        description="time between scans for active tasks on nodes that are not online",
    )
    monitor_grace_seconds: float | None = Field(
        default=None,
        gt=0,
        validation_alias=_env("MONITOR_GRACE_SECONDS"),
        description="how long the cache must have answered before an absent node counts as "
        "lost (default: the larger of node_ttl_seconds and 2 heartbeat intervals)",
    )
    lease_ttl: float = Field(
        default=3.0,
        gt=0.2,
        validation_alias=_env("CONTROLLER_LEASE_TTL"),
        description="life of the monitor/dispatcher leader leases: the longest a dead "
        "leader's work waits for another controller (more than 0.2: twice the settle time)",
    )

    def runs(self, mode: ControllerMode) -> bool:
        """Whether this process runs ``mode``'s parts (modes include the ones before)."""
        order = list(ControllerMode)
        return order.index(self.mode) >= order.index(mode)


def or_setting(value: float | None, setting: float) -> float:
    """``value`` when a caller passed one (tests, embedding), else the setting's.

    The monitor and the dispatcher take their timings as keyword arguments that
    default to the settings, so the defaults are written once, here.
    """
    return setting if value is None else value
