"""The bus topics a controller follows, in a module light enough to import anywhere.

``skalds up`` asks its node to consume them too (``Skald.share_events``) before the
node forks its fork server, when the web stack must not be imported yet.
"""

from __future__ import annotations

from skalds.ports.event_bus import Topic

__all__ = ["CONTROLLER_TOPICS"]

CONTROLLER_TOPICS = (
    Topic.TASKWORKER_UPDATE.value,
    Topic.TASK_CREATED.value,
    Topic.TASK_ASSIGN.value,
    Topic.TASK_CANCEL.value,
)
"""What the parts of a controller follow: the dispatcher's topics and the live events'."""
