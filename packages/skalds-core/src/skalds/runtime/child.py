"""The worker side of a task process: receive the task, run it, report back.

Runs in a process forked by the fork server. It holds no broker, cache or store
connection: one pipe to the node carries the task, heartbeats, updates, failures
and the final outcome.

No worker outlives its node: when the node's end of the pipe closes (the node died,
with its fork server or not), the worker cancels itself as a cancel would: SIGTERM
to itself (its release handler runs), and after the grace period SIGKILL to its
whole process group. The task's new run, on this node restarted or elsewhere, is then
the only one.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from skalds.errors import SkaldsError
from skalds.model.task import TaskLifecycleStatus
from skalds.runtime.protocol import decode, encode
from skalds.utils.logging import configure_logging, configure_worker_logging, logger
from skalds.worker.baseclass import AbstractTaskWorker, WorkerReporter
from skalds.worker.registry import WorkerRegistry

__all__ = ["EXIT_CODES", "run_worker"]

EXIT_CODES = {
    TaskLifecycleStatus.FINISHED: 0,
    TaskLifecycleStatus.FAILED: 1,
    TaskLifecycleStatus.CANCELLED: 0,
}


class _Channel(WorkerReporter):
    """The worker's end of the node pipe, with a thread for heartbeats and updates.

    The thread is a bare ``_thread`` one with a flag to stop it, not a
    ``threading.Thread`` with an ``Event``: this runs in a process forked for one
    task, where every object touched costs a page copy, and ``Thread.start()`` (its
    start-up handshake and bookkeeping) took about a sixth of a short task's CPU.
    It is a daemon in effect: the process leaves with ``os._exit``.
    """

    def __init__(
        self, conn: Connection, worker: AbstractTaskWorker[Any], interval: float, grace: float
    ) -> None:
        self._conn = conn
        self._worker = worker
        self._interval = interval
        self._grace = grace
        self._send_lock = _thread.allocate_lock()
        self._stopped = False
        self.orphaned = False
        """The node's end closed: this process cancels itself and leaves no child behind."""

    def send(self, kind: str, **fields: Any) -> None:
        try:
            with self._send_lock:
                self._conn.send_bytes(encode(kind, **fields))
        except OSError:
            pass  # the node is gone; the fork server will stop us

    def start(self) -> None:
        _thread.start_new_thread(self._run, ())

    def stop(self) -> None:
        self._stopped = True

    def failure(self, task_id: str, error: str, tb: str) -> None:
        self.send("failure", error=error, tb=tb)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # never silent: the worker goes on without heartbeats then
            logger.exception("the channel to the node failed; no more heartbeats or updates")

    def _loop(self) -> None:
        beat = 0
        self.send("hb", v=beat)
        while not self._stopped:
            try:
                ready = self._conn.poll(self._interval)
                if ready:
                    self._handle(decode(self._conn.recv_bytes()))
                    continue
            except (EOFError, OSError):
                if not self._stopped:
                    self._node_gone()
                return
            if self._stopped:
                return
            beat = (beat + 1) % 200
            self.send("hb", v=beat)

    def _node_gone(self) -> None:
        """The node's end of the pipe closed: cancel this task, then end its group."""
        self.orphaned = True
        logger.warning(
            "task %s: its node is gone; cancelling it (another run takes over)",
            self._worker.task_id,
        )
        group = os.getpgid(0)
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGCONT)  # children a pause stopped must see the TERM
            os.kill(os.getpid(), signal.SIGTERM)  # the release handler runs
        time.sleep(self._grace)
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg["t"] != "update":
            logger.warning("unexpected message from node: %s", msg["t"])
            return
        error = None
        try:
            self._worker.handle_update_message(msg["attachments"], msg.get("version"))
        except SkaldsError as exc:
            error = str(exc)
            logger.error("update rejected: %s", error)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("update handler of task %s raised", self._worker.task_id)
        self.send("updated", seq=msg["seq"], version=msg.get("version"), error=error)


def run_worker(conn: Connection, registry: WorkerRegistry) -> int:
    """Receive the task on ``conn``, run its worker, report the outcome; return an exit code."""
    init = decode(conn.recv_bytes())
    task_id = init["task_id"]
    configure_logging(init.get("log_level", "INFO"))
    configure_worker_logging(
        f"{init.get('skald_id', 'skalds')}/{task_id}",
        init.get("log_file"),
        init.get("log_rotation_mb", 10),
        init.get("log_retention", 3),
    )
    try:
        cls = registry.get(init["class_name"]).cls
        worker = cls()
        worker.task_id = task_id
        worker.task_type = init["class_name"]
        worker.dependencies = list(init.get("dependencies") or [])
        worker.incarnation = int(init.get("incarnation") or 0)
        worker.attachments_version = int(init.get("attachments_version") or 0)
        channel = _Channel(
            conn,
            worker,
            float(init.get("heartbeat_interval", 1.0)),
            float(init.get("grace", 5.0)),
        )
        worker._reporter = channel
        worker.initialize(cls.validate_attachments(init["attachments"], task_id))
    except Exception as exc:
        tb = traceback.format_exc()
        logger.error("task %s could not start: %s\n%s", task_id, exc, tb.rstrip())
        conn.send_bytes(
            encode("exit", status="Failed", error=f"{type(exc).__name__}: {exc}", tb=tb)
        )
        return 1
    channel.start()
    status = worker.start()
    channel.stop()
    failure = worker._failure
    channel.send(
        "exit",
        status=status.value,
        error=failure[0] if failure else None,
        tb=failure[1] if failure else None,
    )
    _flush()
    if channel.orphaned:
        # No fork server reaps this process and ends its group: end it here, with
        # whatever the task started.
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)
    return EXIT_CODES[status]


def _flush() -> None:
    for handler in logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
