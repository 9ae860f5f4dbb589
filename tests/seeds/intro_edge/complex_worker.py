"""Our ComplexWorker for the intro's edge example (intro.md names it but does not show it)."""

import random
import time

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import BaseTaskWorker, run_main_handler


class SubTask(BaseModel):
    name: str
    duration: float = 1.0
    fail_chance: float = Field(0.0, ge=0, le=1)


class ComplexDataModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(..., alias="jobId")
    enable_feature_x: bool = Field(False, alias="enableFeatureX")
    retries: int = Field(2, ge=0)
    sub_tasks: list[SubTask] = Field(default_factory=list, alias="subTasks")


class ComplexWorker(BaseTaskWorker[ComplexDataModel]):
    def initialize(self, data: ComplexDataModel) -> None:
        self.data = data

    @run_main_handler
    def main_run(self) -> None:
        for sub in self.data.sub_tasks:
            for attempt in range(self.data.retries + 1):
                logger.info(f"{self.data.job_id}: {sub.name} (try {attempt + 1})")
                time.sleep(sub.duration)
                if random.random() >= sub.fail_chance:
                    break
            else:
                raise RuntimeError(f"{sub.name} failed after {self.data.retries + 1} tries")
        logger.info(f"{self.data.job_id}: all sub-tasks done")
