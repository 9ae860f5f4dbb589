"""A one-shot job in stages, each retried, each with a chance of failing."""

from __future__ import annotations

import random
import time

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import (
    BaseTaskWorker,
    run_after_handler,
    run_before_handler,
    run_main_handler,
)


class SubTask(BaseModel):
    """One stage of the job."""

    name: str = Field(..., min_length=1)
    duration: float = Field(1.0, ge=0, le=3600, description="seconds the stage takes")
    fail_chance: float = Field(0.0, ge=0.0, le=1.0, description="probability a try fails")


class MultiStageParams(BaseModel):
    """The stages to run and how hard to try."""

    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(..., alias="jobId", min_length=1)
    retries: int = Field(2, ge=0, le=10, description="extra tries per stage")
    enable_feature_x: bool = Field(False, alias="enableFeatureX")
    sub_tasks: list[SubTask] = Field(default_factory=list, alias="subTasks")
    seed: int | None = Field(None, description="random seed, for repeatable runs")


class StageFailed(RuntimeError):
    """A stage failed on every try."""


class MultiStageJobWorker(BaseTaskWorker[MultiStageParams]):
    """Runs ``subTasks`` in order; a stage that fails ``retries + 1`` times fails the job."""

    def initialize(self, data: MultiStageParams) -> None:
        self.params = data
        self.random = random.Random(data.seed)
        self.done: list[str] = []

    @run_before_handler
    def plan(self) -> None:
        names = ", ".join(s.name for s in self.params.sub_tasks) or "nothing"
        logger.info("job %s: %d stages: %s", self.params.job_id, len(self.params.sub_tasks), names)

    @run_main_handler
    def run_stages(self) -> None:
        for stage in self.params.sub_tasks:
            self._run_stage(stage)

    def _run_stage(self, stage: SubTask) -> None:
        for attempt in range(1, self.params.retries + 2):
            logger.info("job %s: stage %r, try %d", self.params.job_id, stage.name, attempt)
            time.sleep(stage.duration)
            if self.random.random() >= stage.fail_chance:
                self.done.append(stage.name)
                return
            logger.warning(
                "job %s: stage %r failed on try %d", self.params.job_id, stage.name, attempt
            )
        raise StageFailed(f"stage {stage.name!r} failed {self.params.retries + 1} times")

    @run_after_handler
    def report(self) -> None:
        logger.info("job %s: all %d stages done", self.params.job_id, len(self.done))
