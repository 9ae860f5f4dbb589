"""The ``skalds`` logger and how nodes and workers set it up.

``from skalds.utils.logging import logger`` is what worker code uses (seed API). It is
a standard :mod:`logging` logger, so applications can add their own handlers. Lines
carry the node id and, inside a worker process, the task id; with
``log_split_with_worker_id=True`` each worker also writes ``<log_path>/<task id>.log``
with size-based rotation.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure_logging", "configure_worker_logging", "logger", "worker_log_path"]

logger = logging.getLogger("skalds")

_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s [%(skalds_context)s] %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_context = {"value": "skalds"}
_configured = {"console": False}


class _ContextFilter(logging.Filter):
    """Stamp each record with the node/task context of this process."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.skalds_context = _context["value"]
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A handler that kept the stream object it was created with would keep writing to
    a stream someone replaced since (a test runner's capture, a redirected stderr),
    also in every worker process forked later.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        err = sys.stderr
        return err._stream if isinstance(err, _TeeToLogFile) else err

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# One of each, made at import and used by every handler: a worker process is a fork
# that sets up its log file once, and each object it builds there (a Formatter
# validates its format with a regular expression) writes pages it shares with the
# fork server.
_SHARED_FORMATTER = logging.Formatter(_FORMAT, _DATEFMT)
_SHARED_FILTER = _ContextFilter()


def configure_logging(level: str | None = None, context: str | None = None) -> None:
    """Send ``skalds`` logs to stderr in a readable format (idempotent).

    Args:
        level: the minimum level shown; ``None`` keeps the current one (INFO at first).
        context: what each line is tagged with (the skald id, or ``skald/task``).
    """
    if context:
        _context["value"] = context
    if level is not None:
        if logger.level != logging.getLevelName(level):  # a new level clears every
            logger.setLevel(level)  # logger's cache: no need in a forked worker
    elif not _configured["console"] and logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not _configured["console"]:
        handler = _StderrHandler()
        handler.setFormatter(_SHARED_FORMATTER)
        handler.addFilter(_SHARED_FILTER)
        handler.set_name("skalds-console")
        logger.addHandler(handler)
        logger.propagate = False
        _configured["console"] = True


def worker_log_path(log_path: str | Path, task_id: str) -> Path:
    """Return the log file of ``task_id`` under ``log_path`` (ids are made filename-safe)."""
    return Path(log_path) / f"{_SAFE_NAME.sub('_', task_id)}.log"


class _TeeToLogFile:
    """A text stream that also appends each complete line to the worker's log file.

    Worker code that uses ``print()`` (the seeds do) then shows up in the per-task log
    file too, not only on the node's console.
    """

    def __init__(self, stream: Any, handler: logging.Handler, level: int) -> None:
        self._stream = stream
        self._handler = handler
        self._level = level
        self._partial = ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            record = logging.LogRecord("skalds.print", self._level, "", 0, line, None, None)
            self._handler.handle(record)
        return int(written) if written is not None else len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure_worker_logging(
    context: str, log_file: str | None, rotation_mb: int = 10, retention: int = 3
) -> None:
    """Set up logging inside a worker process: tag lines, add the per-task log file.

    Args:
        context: the tag for each line (``skald_id/task_id``).
        log_file: path of the task's own log file, or ``None`` for console only.
        rotation_mb: rotate the file when it reaches this size.
        retention: how many rotated files to keep.
    """
    _context["value"] = context
    if isinstance(sys.stdout, _TeeToLogFile):
        sys.stdout = sys.stdout._stream
    if isinstance(sys.stderr, _TeeToLogFile):
        sys.stderr = sys.stderr._stream
    for handler in list(logger.handlers):
        if handler.get_name() == "skalds-worker-file":
            logger.removeHandler(handler)
            handler.close()
    if log_file:
        directory = os.path.dirname(log_file)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=rotation_mb * 1024 * 1024, backupCount=retention, encoding="utf-8"
        )
        file_handler.setFormatter(_SHARED_FORMATTER)
        file_handler.addFilter(_SHARED_FILTER)
        file_handler.set_name("skalds-worker-file")
        logger.addHandler(file_handler)
        sys.stdout = _TeeToLogFile(sys.stdout, file_handler, logging.INFO)
        sys.stderr = _TeeToLogFile(sys.stderr, file_handler, logging.ERROR)
