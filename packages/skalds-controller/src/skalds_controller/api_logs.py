"""Reading a task's log file for ``GET /api/tasks/{id}/logs``.

The controller reads only a path that a node published for that very task (in the
``tasks`` list of ``skalds:{id}:info``, when the node runs with
``log_split_with_worker_id``), and only when it looks like one a node writes: an
absolute, symlink-free path whose file name is the task's log name. A request can
never choose the path, so there is nothing to traverse.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from skalds.utils.logging import worker_log_path
from skalds_controller.errors import ApiError
from skalds_controller.live_nodes import LogLocation

__all__ = ["LogTail", "follow_log", "locate_log", "tail_log"]

_BLOCK = 64 * 1024
_MAX_TAIL_BYTES = 4 * 1024 * 1024
_CODE = "LOG_NOT_FOUND"


@dataclass(frozen=True)
class LogTail:
    """The last lines of a log file and where the complete lines end (for follow)."""

    lines: list[str]
    end: int
    inode: int


def locate_log(task_id: str, where: LogLocation | None) -> Path:
    """The log file of ``task_id`` on this machine, or a 404 saying why not."""
    if where is None:
        raise ApiError(
            404,
            _CODE,
            f"no node published a log file for task {task_id!r}; nodes publish one "
            "while the task runs when started with LOG_SPLIT_WITH_WORKER_ID=true",
        )
    here = socket.gethostname()
    if where.hostname and where.hostname != here:
        raise ApiError(
            404,
            _CODE,
            f"the log of task {task_id!r} is on host {where.hostname!r} (node "
            f"{where.node_id!r}); this controller runs on {here!r} and reads local files only",
        )
    path = Path(where.path)
    expected = worker_log_path(".", task_id).name
    if (
        not path.is_absolute()
        or path.name != expected
        or ".." in path.parts
        or os.path.realpath(path) != str(path)
    ):
        raise ApiError(
            404, _CODE, f"node {where.node_id!r} published no usable log path for task {task_id!r}"
        )
    if not path.is_file():
        raise ApiError(
            404, _CODE, f"the log file of task {task_id!r} is not on this machine: {path}"
        )
    return path


def tail_log(path: Path, lines: int) -> LogTail:
    """The last ``lines`` lines (read backwards, at most a few MB), decoded leniently."""
    with open(path, "rb") as fh:
        inode = os.fstat(fh.fileno()).st_ino
        end = fh.seek(0, os.SEEK_END)
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= lines and end - pos < _MAX_TAIL_BYTES:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    complete = data.rfind(b"\n") + 1
    body = data[:complete]
    parts = body.split(b"\n")[:-1] if body else []
    if pos > 0 and parts:
        parts = parts[1:]  # the first one is cut
    picked = parts[-lines:] if lines else []
    return LogTail(
        [p.decode("utf-8", "replace") for p in picked], end - (len(data) - complete), inode
    )


async def follow_log(
    path: Path,
    start: LogTail,
    is_done: Callable[[], bool],
    *,
    poll_seconds: float = 0.25,
    idle_check_seconds: float = 1.0,
) -> AsyncIterator[bytes]:
    """The tail, then new bytes as they are written, until the task ended and went quiet.

    A rotated or truncated file is read again from its start. A client that goes away
    is noticed by the streaming response, which then cancels this generator.
    """
    if start.lines:
        yield ("\n".join(start.lines) + "\n").encode()
    pos, inode, idle = start.end, start.inode, 0.0
    while True:
        chunk, pos, inode = await run_in_threadpool(_read_more, path, pos, inode)
        if chunk:
            idle = 0.0
            yield chunk
            continue
        idle += poll_seconds
        if idle >= idle_check_seconds:
            idle = 0.0
            if await run_in_threadpool(is_done):
                return
        await asyncio.sleep(poll_seconds)


def _read_more(path: Path, pos: int, inode: int) -> tuple[bytes, int, int]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; stat and read must agree
    except FileNotFoundError:
        return b"", pos, inode  # between a rotation's rename and the new file
    with fh:
        stat = os.fstat(fh.fileno())
        if stat.st_ino != inode or stat.st_size < pos:
            pos, inode = 0, stat.st_ino
        fh.seek(pos)
        chunk = fh.read(_BLOCK)
    return chunk, pos + len(chunk), inode
