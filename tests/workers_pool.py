"""A worker that uses a multiprocessing pool (needs a non-daemonic worker process)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from pydantic import BaseModel

from skalds.worker.baseclass import BaseTaskWorker, run_main_handler


class PoolParams(BaseModel):
    out: str


def square(x: int) -> int:
    return x * x


class PoolWorker(BaseTaskWorker[PoolParams]):
    @run_main_handler
    def main(self) -> None:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            result = pool.map(square, range(4))
        Path(self.attachments.out).write_text(str(result))
