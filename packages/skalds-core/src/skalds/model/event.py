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
    model_validator,
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

    ``incarnation`` (optional, left out of the JSON when unset) is the fencing token
    of the run the event is about (see :class:`~skalds.model.task.Task`): a node
    ignores an event for an older run of a task. It names one task, so an event that
    carries it has exactly one id. Events without it (the seeds') make the node read
    the store instead.
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
    incarnation: int | None = Field(default=None, ge=0)

    @field_validator("message", mode="before")
    @classmethod
    def _cut(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > _MESSAGE_MAX:
            return value[: _MESSAGE_MAX - 1] + "…"
        return value

    @model_validator(mode="after")
    def _one_task_per_incarnation(self) -> TaskEvent:
        if self.incarnation is not None and len(self.task_ids) != 1:
            raise ValueError("an event with an incarnation names exactly one task")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_extras(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Events without a message or incarnation keep the seed's exact JSON.
        data = handler(self)
        if isinstance(data, dict):
            for extra in ("message", "incarnation"):
                if extra in data and data[extra] is None:
                    del data[extra]
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
