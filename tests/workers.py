"""Worker classes the tests run; behaviour is steered by their attachments."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import (
    BaseTaskWorker,
    release_handler,
    run_after_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)

Stage = Literal["", "initialize", "before", "main", "after", "release", "update"]


class ProbeParams(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    trace: str = Field(..., alias="traceFile", description="file the worker appends events to")
    label: str = Field("start", alias="label")
    fix_frame: int = Field(10, alias="fixFrame", ge=1, le=1000)
    main_seconds: float = Field(0.0, alias="mainSeconds", ge=0)
    fail_in: Stage = Field("", alias="failIn")
    ignore_sigterm: bool = Field(False, alias="ignoreSigterm")
    spawn_children: bool = Field(False, alias="spawnChildren")
    os_exit: int | None = Field(None, alias="osExit")
    payload: str = Field("", alias="payload", description="bulk, to make attachments large")


class ProbeWorker(BaseTaskWorker[ProbeParams]):
    """Appends each lifecycle step to ``traceFile`` so a test can see what ran, in order."""

    def _note(self, text: str) -> None:
        with open(self.params.trace, "a") as fh:
            fh.write(text + "\n")

    def _maybe_fail(self, stage: str) -> None:
        if self.params.fail_in == stage:
            raise RuntimeError(f"boom in {stage}")

    def initialize(self, data: ProbeParams) -> None:
        self.params = data
        self._note(f"initialize {data.label} {data.fix_frame}")
        self._maybe_fail("initialize")

    @run_before_handler
    def before(self) -> None:
        self._note(f"before pid={os.getpid()} pgid={os.getpgid(0)}")
        if self.params.ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._maybe_fail("before")

    @run_main_handler
    def main(self) -> None:
        self._note("main")
        if self.params.spawn_children:
            self._spawn_family()
        if self.params.os_exit is not None:
            os._exit(self.params.os_exit)
        deadline = time.monotonic() + self.params.main_seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
        self._maybe_fail("main")

    def _spawn_family(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", _GRANDPARENT])
        sleeper = subprocess.Popen(["sleep", "300"])
        self._note(f"child {child.pid}")
        self._note(f"child {sleeper.pid}")

    @run_after_handler
    def after(self) -> None:
        self._note("after")
        self._maybe_fail("after")

    @release_handler
    def release(self) -> None:
        self._note("release")
        self._maybe_fail("release")

    @update_event_handler
    def update(self, data: ProbeParams) -> None:
        self._note(f"update {data.label} {data.fix_frame}")
        logger.info("probe updated: label=%s fixFrame=%d", data.label, data.fix_frame)
        self._maybe_fail("update")
        self.params = data


# A child that starts a grandchild, reports its pid through the trace file's
# neighbour, then sleeps: both must be gone after a cancel.
_GRANDPARENT = """
import subprocess, time
subprocess.Popen(["sleep", "300"])
time.sleep(300)
"""


class NoUpdateParams(BaseModel):
    trace: str


class NoUpdateWorker(BaseTaskWorker[NoUpdateParams]):
    """Runs for a while; has no update handler."""

    @run_main_handler
    def main(self) -> None:
        Path(self.attachments.trace).write_text("main\n")
        time.sleep(30)


def family_pids(trace: Path) -> list[int]:
    """Pids of the processes a ProbeWorker started, and of their children."""
    import psutil

    pids = [
        int(line.split()[1]) for line in trace.read_text().splitlines() if line.startswith("child ")
    ]
    out = list(pids)
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out += [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return out


class OtherProbeWorker(ProbeWorker):
    """Same behaviour under another className."""


class LedgerParams(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    ledger: str = Field(..., description="file the worker appends its history to")
    value: int = 0
    payload: str = ""


class LedgerWorker(BaseTaskWorker[LedgerParams]):
    """Runs until cancelled; writes its own history, independent of Skalds' records.

    One JSON line per start, applied update and stop, appended and flushed by the
    worker process itself: its pid, its run (incarnation), the attachments version
    and value it holds. Tests read it to count live copies and check what was applied.
    """

    def _write(self, event: str) -> None:
        line = json.dumps(
            {
                "e": event,
                "task": self.task_id,
                "pid": os.getpid(),
                "inc": self.incarnation,
                "v": self.attachments_version,
                "value": self.params.value,
                "t": time.time(),
            }
        )
        with open(self.params.ledger, "a") as fh:
            fh.write(line + "\n")

    def initialize(self, data: LedgerParams) -> None:
        self.params = data
        self._write("start")

    @run_main_handler
    def main(self) -> None:
        while True:
            time.sleep(0.05)

    @update_event_handler
    def update(self, data: LedgerParams) -> None:
        self.params = data
        self._write("update")

    @release_handler
    def release(self) -> None:
        self._write("stop")


def read_ledger(path: Path) -> list[dict[str, object]]:
    """The history a LedgerWorker wrote (complete lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out
