"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skalds.model.task import RetryPolicy, TaskLifecycleStatus

__all__ = ["AttachmentsUpdate", "Page", "StatusChange", "TaskCreate"]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"


class TaskCreate(BaseModel):
    """``POST /api/tasks``: a new task; attachments are checked against the worker's schema."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    class_name: str = Field(alias="className", min_length=1, max_length=200)
    attachments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, pattern=_ID_PATTERN)
    name: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=5000)
    priority: int = Field(default=0, ge=0, le=10)
    dependencies: list[str] = Field(default_factory=list, max_length=100)
    deadline: int | None = Field(default=None, ge=0, description="ms since the epoch")
    retry_policy: RetryPolicy | None = Field(default=None, alias="retryPolicy")
    is_persistent: bool = Field(default=False, alias="isPersistent")
    executor: str | None = Field(default=None, max_length=200)
    resources: dict[str, float] = Field(default_factory=dict, max_length=20)


class AttachmentsUpdate(BaseModel):
    """``PUT /api/tasks/{id}/attachments``."""

    model_config = ConfigDict(extra="forbid")

    attachments: dict[str, Any]


class StatusChange(BaseModel):
    """``PUT /api/tasks/{id}/status``: ``Cancelled``, or ``Created`` to re-queue."""

    model_config = ConfigDict(extra="forbid")

    lifecycle_status: TaskLifecycleStatus = Field(alias="lifecycleStatus")


class Page(BaseModel):
    """One page of a list."""

    items: list[dict[str, Any]]
    total: int
    page: int
    page_size: int = Field(alias="pageSize")

    model_config = ConfigDict(populate_by_name=True)
