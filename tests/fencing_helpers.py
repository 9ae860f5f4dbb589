"""Helpers of the fencing tests: which worker processes of a task live, nodes as OS
processes, where the store says a task runs.

The ProbeWorker writes ``before pid=N pgid=M`` to its trace file as it starts; that
record, written by the worker process itself, is what these tests trust to count the
live copies of a task, not what Skalds says about it.

Their fixtures (``controller``, ``make_node``, ``traces``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skalds.model.task import TaskLifecycleStatus
from skalds.plugins import Backends
from tests.helpers import process_alive, read_lines, stored

ROOT = Path(__file__).resolve().parents[1]

NODE_SCRIPT = """
import json, sys
from skalds import Skald
from skalds.config.skald_config import SkaldConfig
from tests.workers import ProbeWorker

node = Skald(SkaldConfig(**json.loads(sys.argv[1])))
node.register_task_worker(ProbeWorker)
sys.exit(node.run())
"""


def started_pids(trace: Path) -> list[int]:
    """Pids of every process that started the task, from the worker's own trace."""
    return [
        int(line.split()[1].removeprefix("pid="))
        for line in read_lines(trace)
        if line.startswith("before pid=")
    ]


def live_pids(trace: Path) -> list[int]:
    """Pids of the task's worker processes that are alive now."""
    return [pid for pid in started_pids(trace) if process_alive(pid)]


class NodeProcess:
    """A Skald node in an OS process of its own, in its own process group (a "machine").

    Killing its group (``kill -9 -- -<pgid>``) kills the node and its fork server at
    once, as a machine losing power or an OOM kill of a container does; the worker
    processes are in sessions of their own and see only their node pipe close.
    """

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        import json

        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", NODE_SCRIPT, json.dumps(config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def kill_group(self) -> None:
        """SIGKILL the node's whole process group (node and fork server together)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_group()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def node_processes() -> Iterator[list[NodeProcess]]:
    """Collects the node processes a test starts; stops what is left at the end."""
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for node in started:
            node.stop()


def kill_leftovers(trace: Path) -> None:
    """SIGKILL whatever worker processes of a trace still live (cleanup after a failure)."""
    for pid in live_pids(trace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` lives; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if process_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if process_alive(pid)]
    return alive


def running_on(backends: Backends, task_id: str, node_id: str) -> bool:
    """Whether the store says the task is Running on ``node_id``."""
    task = stored(backends, task_id)
    return task.lifecycle_status is TaskLifecycleStatus.RUNNING and task.executor == node_id
