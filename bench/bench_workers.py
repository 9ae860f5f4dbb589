"""Workers used by the benchmarks."""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel

from skalds.worker.baseclass import BaseTaskWorker, run_main_handler, update_event_handler


class IdleParams(BaseModel):
    out: str = ""
    seq: int = 0


class IdleWorker(BaseTaskWorker[IdleParams]):
    """Waits forever; records when each update reaches its handler."""

    @run_main_handler
    def wait(self) -> None:
        threading.Event().wait()

    @update_event_handler
    def on_update(self, data: IdleParams) -> None:
        entered = time.monotonic_ns()
        with open(data.out, "a") as fh:
            fh.write(f"{data.seq} {entered}\n")
