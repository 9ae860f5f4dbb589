"""Events carried by the event bus (seed formats, JSON with camelCase keys)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skalds.utils.time import now_ms

__all__ = ["TaskEvent", "UpdateTaskWorkerEvent"]


class TaskEvent(BaseModel):
    """Names tasks to assign, cancel, update, pause or resume.

    ``recipient`` narrows an event to one skald; events without one are for every node
    (each node then checks the store to see whether the task is its own).
    """

    model_config = ConfigDict(populate_by_name=True)

    id: str | None = None
    title: str | None = None
    initiator: str | None = None
    recipient: str | None = None
    create_date_time: int = Field(default_factory=now_ms, alias="createDateTime")
    update_date_time: int = Field(default_factory=now_ms, alias="updateDateTime")
    task_ids: list[str] = Field(alias="taskIds", max_length=10_000)

    def model_dump_json(self, **kwargs: Any) -> str:
        """Serialise by alias (camelCase) unless told otherwise, as the wire format wants."""
        kwargs.setdefault("by_alias", True)
        return super().model_dump_json(**kwargs)


class UpdateTaskWorkerEvent(BaseModel):
    """New attachments for a running worker; ``attachments`` must be a pydantic model."""

    attachments: Any | None = None

    @field_validator("attachments", mode="before")
    @classmethod
    def _must_be_model(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, BaseModel):
            raise ValueError("attachments must be a Pydantic BaseModel instance")
        return value

    def model_dump_json(self, **kwargs: Any) -> str:
        """Serialise attachments by alias, as workers' models expect."""
        kwargs.setdefault("by_alias", True)
        return super().model_dump_json(**kwargs)
