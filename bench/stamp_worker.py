"""The benchmarks' worker: notes when its main handler is entered, returns at once.

A module of its own, importing only what a worker needs, as a user's worker module
would: the node's fork server (and so every task process) is a copy of a process
that imported it.
"""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel

from skalds.worker.baseclass import BaseTaskWorker, run_main_handler

__all__ = ["StampParams", "StampWorker"]


class StampParams(BaseModel):
    out: str = ""
    forever: bool = False


class StampWorker(BaseTaskWorker[StampParams]):
    """Writes CLOCK_MONOTONIC (ns) to ``out`` when entered; runs until cancelled if ``forever``."""

    @run_main_handler
    def main(self) -> None:
        entered = time.monotonic_ns()
        params: StampParams = self.attachments
        if params.out:
            with open(params.out, "w") as fh:
                fh.write(str(entered))
        if params.forever:
            threading.Event().wait()
