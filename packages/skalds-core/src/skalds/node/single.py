"""single_process mode: the first YAML worker runs in the foreground, no services needed.

Exit codes: 0 when the task finished or was stopped on request (SIGTERM/Ctrl-C),
1 when it failed, 2 when the YAML file or the worker cannot be used. A worker with
``isPersistent: true`` is a long-lived service (like a Deployment): when it ends or
fails it is started again after a back-off, until SIGTERM. ``isPersistent: false`` is
a one-shot job (like a Job/CronJob): it runs once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from skalds.errors import AttachmentValidationError, UnknownWorkerError, YamlConfigError
from skalds.model.task import TaskLifecycleStatus
from skalds.node.yaml_config import YamlWorker, read_yaml_file
from skalds.utils.logging import configure_worker_logging, logger, worker_log_path
from skalds.worker.registry import WorkerRegistry

__all__ = ["EXIT_BAD_CONFIG", "EXIT_FAILED", "EXIT_OK", "run_single_process"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
_BACKOFF_START = 1.0
_BACKOFF_MAX = 30.0

S = TaskLifecycleStatus


def _first_worker(path: str) -> YamlWorker:
    """Return the first entry of the file; raise if that entry is broken or there is none."""
    parsed = read_yaml_file(path)
    for warning in parsed.warnings:
        logger.warning(warning)
    entries: list[tuple[int, YamlWorker | YamlConfigError]] = [
        (w.line, w) for w in parsed.workers
    ] + [(e.line or 0, e) for e in parsed.errors]
    if not entries:
        raise YamlConfigError("no worker under 'TaskWorkers'", path=path)
    first = min(entries, key=lambda item: item[0])[1]
    if isinstance(first, YamlConfigError):
        raise first
    return first


def run_single_process(
    path: str,
    registry: WorkerRegistry,
    *,
    skald_id: str = "single",
    log_split: bool = False,
    log_path: str = "logs",
    rotation_mb: int = 10,
    retention: int = 3,
) -> int:
    """Run the first worker of ``path`` in this process; return the process exit code."""
    try:
        worker_cfg = _first_worker(path)
        cls = registry.get(worker_cfg.class_name).cls
        data = cls.validate_attachments(worker_cfg.attachments, worker_cfg.task_id)
    except (YamlConfigError, UnknownWorkerError, AttachmentValidationError) as exc:
        logger.error("cannot run single process: %s", exc)
        return EXIT_BAD_CONFIG
    log_file = str(worker_log_path(log_path, worker_cfg.task_id)) if log_split else None
    configure_worker_logging(f"{skald_id}/{worker_cfg.task_id}", log_file, rotation_mb, retention)
    stop = threading.Event()
    backoff = _BACKOFF_START
    while True:
        worker = cls(task_id=worker_cfg.task_id)
        worker.task_type = worker_cfg.class_name
        try:
            worker.initialize(data)
        except Exception as exc:
            logger.exception("task %s: initialize failed: %s", worker_cfg.task_id, exc)
            status = S.FAILED
        else:
            status = worker.start()
        if status is S.CANCELLED or stop.is_set():
            return EXIT_OK
        if not worker_cfg.is_persistent:
            return EXIT_OK if status is S.FINISHED else EXIT_FAILED
        logger.warning(
            "persistent task %s %s; restarting in %.0f s",
            worker_cfg.task_id,
            status.value.lower(),
            backoff,
        )
        if _sleep_unless_stopped(backoff, stop):
            return EXIT_OK
        backoff = _BACKOFF_START if status is S.FINISHED else min(backoff * 2, _BACKOFF_MAX)


def _sleep_unless_stopped(seconds: float, stop: threading.Event) -> bool:
    """Sleep, but return True at once when SIGTERM/SIGINT arrives meanwhile."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old_term = signal.signal(signal.SIGTERM, on_signal)
    old_int = signal.signal(signal.SIGINT, on_signal)
    try:
        return stop.wait(seconds)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
