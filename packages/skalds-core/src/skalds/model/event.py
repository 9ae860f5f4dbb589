"""Events carried by the event bus (seed formats, JSON with camelCase keys)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from skalds.utils.time import now_ms

__all__ = ["TaskEvent", "UpdateTaskWorkerEvent"]

_MESSAGE_MAX = 2000


class TaskEvent(BaseModel):
    """Names tasks to assign, cancel, update, pause or resume.

    ``recipient`` narrows an event to one skald; events without one are for every node
    (each node then checks the store to see whether the task is its own). ``message``
    (optional, left out of the JSON when unset) says why, e.g. the worker's reason for
    ``UpdateFailed``; longer ones are cut to 2000 characters.
    """

    model_config = ConfigDict(populate_by_name=True)

    id: str | None = None
    title: str | None = None
    initiator: str | None = None
    recipient: str | None = None
    create_date_time: int = Field(default_factory=now_ms, alias="createDateTime")
    update_date_time: int = Field(default_factory=now_ms, alias="updateDateTime")
    task_ids: list[str] = Field(alias="taskIds", max_length=10_000)
    message: str | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _cut(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > _MESSAGE_MAX:
            return value[: _MESSAGE_MAX - 1] + "…"
        return value

    @model_serializer(mode="wrap")
    def _without_unset_message(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Events without a message keep the seed's exact JSON.
        data = handler(self)
        if isinstance(data, dict) and data.get("message", "") is None:
            del data["message"]
        return data

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
