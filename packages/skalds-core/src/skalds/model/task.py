"""The task document: what runs, where, with which parameters, in which state.

Field names are snake_case in Python and camelCase in storage (``className``,
``lifecycleStatus``, ``createDateTime``...), so documents written by earlier Skalds
versions read back unchanged. Times are integer milliseconds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from skalds.utils.time import now_ms

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "ModeEnum",
    "RetryPolicy",
    "Task",
    "TaskLifecycleStatus",
]

_WEEK_MS = 7 * 24 * 3600 * 1000


class ModeEnum(StrEnum):
    """How a task reaches a node."""

    ACTIVE = "Active"
    """Loaded from a node's YAML file and started right away (edge mode)."""
    PASSIVE = "Passive"
    """Assigned to a node by a controller or a script (node mode)."""
    PASSIVE_PROCESS = "PassiveProcess"
    """Runs inside one long-lived process (single_process mode)."""


class TaskLifecycleStatus(StrEnum):
    """Task lifecycle: Created → Assigning → Running → Finished | Failed | Cancelled."""

    CREATED = "Created"
    ASSIGNING = "Assigning"
    RUNNING = "Running"
    PAUSED = "Paused"
    FINISHED = "Finished"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        """True for Finished, Failed and Cancelled: nothing runs any more."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {TaskLifecycleStatus.FINISHED, TaskLifecycleStatus.FAILED, TaskLifecycleStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset(
    {
        TaskLifecycleStatus.CREATED,
        TaskLifecycleStatus.ASSIGNING,
        TaskLifecycleStatus.RUNNING,
        TaskLifecycleStatus.PAUSED,
    }
)


class RetryPolicy(BaseModel):
    """How often a failed task is tried again, and how long to wait in between."""

    model_config = ConfigDict(populate_by_name=True)

    max_attempts: int = Field(default=1, ge=1, le=100, alias="maxAttempts")
    """Tries in all, the first included (1 = no retry)."""
    backoff_seconds: float = Field(default=1.0, ge=0, le=86_400, alias="backoffSeconds")
    """Wait before the second try; doubled for each try after it."""
    max_backoff_seconds: float = Field(default=300.0, ge=0, le=86_400, alias="maxBackoffSeconds")


class Task(BaseModel):
    """One unit of supervised work.

    ``attachments`` is the worker's parameter model. It may be given as the worker's
    pydantic model or as a plain dict (as read back from a store); nodes validate it
    against the registered worker's model before starting or updating a worker.

    Fencing: ``incarnation`` numbers the task's placements on nodes. Each placement
    (a dispatcher's Created → Assigning, a task created with an executor, the seeds'
    ``update_executor``) adds one; the node that runs the task writes only while the
    store still holds its own incarnation, and events carry it, so a stale node or a
    late event cannot change a later run. ``attachments_version`` counts the changes
    of the attachments (the store adds one with every change); the node reports the
    version its worker applied in ``applied_attachments_version``.

    ``deadline_date_time`` is the latest time the task may first start: one week after
    creation unless given, none for persistent tasks. A task that has started once is
    never failed by its deadline (a failover re-queue places it again).
    """

    model_config = ConfigDict(populate_by_name=True, validate_assignment=False)

    id: str = Field(min_length=1, max_length=256)
    class_name: str = Field(alias="className", min_length=1, max_length=256)
    source: str = "Unknown"
    name: str | None = None
    description: str | None = None
    executor: str | None = None
    dependencies: list[str] | None = None
    mode: ModeEnum = ModeEnum.PASSIVE
    create_date_time: int = Field(default_factory=now_ms, alias="createDateTime")
    update_date_time: int = Field(default_factory=now_ms, alias="updateDateTime")
    deadline_date_time: int | None = Field(
        default=None,
        alias="deadlineDateTime",
        description="ms; the task must first start before it (default: a week after "
        "creation; none for persistent tasks)",
    )
    lifecycle_status: TaskLifecycleStatus = Field(
        default=TaskLifecycleStatus.CREATED, alias="lifecycleStatus"
    )
    is_persistent: bool = Field(default=False, alias="isPersistent")
    priority: int = Field(default=0, ge=0, le=10)
    attachments: Any = None
    error_message: str | None = Field(default=None, alias="errorMessage")
    retry_policy: RetryPolicy | None = Field(default=None, alias="retryPolicy")
    attempts: int = Field(default=0, ge=0, description="how many times the task was started")
    resources: dict[str, float] = Field(
        default_factory=dict, description="what a node must have free, e.g. {'gpu': 1}"
    )
    not_before: int | None = Field(
        default=None, alias="notBefore", description="ms; do not dispatch before (retry back-off)"
    )
    incarnation: int = Field(
        default=0, ge=0, description="placements so far: the fencing token of the current run"
    )
    attachments_version: int = Field(
        default=0, ge=0, alias="attachmentsVersion", description="changes of the attachments"
    )
    applied_attachments_version: int = Field(
        default=0,
        ge=0,
        alias="appliedAttachmentsVersion",
        description="the attachments version the running worker last applied",
    )

    @model_validator(mode="after")
    def _default_deadline(self) -> Task:
        # Only when none was given at all: an explicit null means "no deadline".
        if (
            self.deadline_date_time is None
            and not self.is_persistent
            and "deadline_date_time" not in self.model_fields_set
        ):
            self.deadline_date_time = self.create_date_time + _WEEK_MS
        return self

    @field_validator("attachments", mode="before")
    @classmethod
    def _model_or_mapping(cls, value: Any) -> Any:
        if value is None or isinstance(value, BaseModel | dict):
            return value
        raise ValueError(
            "attachments must be the worker's pydantic model or a mapping of its fields"
        )

    @field_serializer("attachments")
    def _dump_attachments(self, value: BaseModel | dict[str, Any] | None) -> Any:
        # Attachments are stored by alias so that existing documents and the
        # worker models (which usually declare camelCase aliases) agree.
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True)
        return value

    def attachments_dict(self) -> dict[str, Any]:
        """Return the attachments as a JSON-ready dict (by alias), ``{}`` when unset."""
        dumped = self._dump_attachments(self.attachments)
        return dict(dumped) if dumped else {}

    def to_document(self) -> dict[str, Any]:
        """Return the storage form: camelCase keys, enum values, JSON-ready attachments."""
        return self.model_dump(mode="json", by_alias=True)
