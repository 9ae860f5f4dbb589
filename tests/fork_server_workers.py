"""Workers for tests/test_fork_server.py: they write down what their process sees."""

from __future__ import annotations

import json
import os
import time

from pydantic import BaseModel

from skalds.runtime.zygote import SPEC_ENV
from skalds.worker.baseclass import BaseTaskWorker, run_main_handler

# Changed by a test at run time, after the import: a fresh fork server imports this
# module anew and sees the value below; a copy of the node sees the changed one.
SETTING = "as imported"


class SeenParams(BaseModel):
    out: str


class SeeingWorker(BaseTaskWorker[SeenParams]):
    """Writes the module's SETTING, its parent's pid and whether the fork server's spec leaked."""

    @run_main_handler
    def main(self) -> None:
        seen = {"setting": SETTING, "parent": os.getppid(), "spec_env": SPEC_ENV in os.environ}
        with open(self.attachments.out, "w") as fh:
            json.dump(seen, fh)


class PrintingWorker(BaseTaskWorker[SeenParams]):
    """Prints one line, then runs until cancelled."""

    @run_main_handler
    def main(self) -> None:
        print(f"a line from {self.task_id}")
        while True:
            time.sleep(0.05)
