"""``--wait``: follow a task until it runs or ends, showing its progress.

Each status change is printed as a line (``  0.4s  Running on node-1``); on a terminal
a spinner line below it shows the time waited and the worker's heartbeat counter.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal, TextIO

from skalds.cli._api import (
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    ApiClient,
    ApiRejectedError,
    ApiUnreachableError,
)

__all__ = ["Until", "wait_for_task"]

Until = Literal["running", "finished"]

_FINAL = {"Finished", "Failed", "Cancelled"}
_STARTED = {"Running", "Paused"}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _heartbeat(client: ApiClient, task_id: str) -> str | None:
    """The worker's heartbeat counter, if the API offers it (best effort)."""
    try:
        beat = client.request("GET", f"/api/tasks/{task_id}/heartbeat")
    except (ApiRejectedError, ApiUnreachableError):
        return None
    if not isinstance(beat, dict):
        return None
    for key in ("value", "heartbeat", "current"):
        if beat.get(key) is not None:
            return str(beat[key])
    return None


def _describe(task: dict[str, Any]) -> str:
    status = str(task.get("lifecycleStatus"))
    if status in _STARTED and task.get("executor"):
        return f"{status} on {task['executor']}"
    if status in ("Failed", "Cancelled") and task.get("errorMessage"):
        reason = str(task["errorMessage"]).strip().splitlines()
        return f"{status}: {reason[-1] if reason else ''}"
    return status


def wait_for_task(
    client: ApiClient,
    task_id: str,
    until: Until,
    out: TextIO,
    *,
    timeout: float | None = None,
    interval: float = 0.2,
) -> int:
    """Poll ``task_id`` until it is Running (``until="running"``) or ended; return an exit code.

    0 when it got there (Finished, or Running), ``EXIT_TASK_FAILED`` when it ended
    Failed or Cancelled, ``EXIT_TIMEOUT`` after ``timeout`` seconds.

    Raises:
        ApiRejectedError: the task disappeared (deleted meanwhile).
        ApiUnreachableError: the API stopped answering.
    """
    tty = out.isatty()
    spinner = itertools.cycle(_SPINNER)
    start = time.monotonic()
    shown: str | None = None
    while True:
        task = client.request("GET", f"/api/tasks/{task_id}")
        status = str(task.get("lifecycleStatus"))
        elapsed = time.monotonic() - start
        described = _describe(task)
        if described != shown:
            if tty:
                out.write("\r\033[K")
            out.write(f"{elapsed:6.1f}s  {described}\n")
            shown = described
        if status in _FINAL:
            out.flush()
            return 0 if status == "Finished" else EXIT_TASK_FAILED
        if until == "running" and status in _STARTED:
            out.flush()
            return 0
        if timeout is not None and elapsed >= timeout:
            if tty:
                out.write("\r\033[K")
            out.write(f"gave up waiting after {timeout:g} s; the task is {status}\n")
            out.flush()
            return EXIT_TIMEOUT
        if tty:
            beat = _heartbeat(client, task_id) if status in _STARTED else None
            extra = f"  heartbeat {beat}" if beat is not None else ""
            out.write(f"\r\033[K{next(spinner)} {elapsed:5.1f}s  {status}{extra}")
        out.flush()
        time.sleep(interval)
