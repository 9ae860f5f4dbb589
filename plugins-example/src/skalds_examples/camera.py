"""A long-running stream analyser whose parameters change while it runs."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import (
    BaseTaskWorker,
    release_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)


class CameraStreamParams(BaseModel):
    """Where to read frames from and how to analyse them."""

    model_config = ConfigDict(populate_by_name=True)

    rtsp_url: str = Field(..., alias="rtspUrl", description="RTSP stream URL", min_length=1)
    fix_frame: int = Field(10, alias="fixFrame", ge=1, le=120, description="frames per second")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="detection threshold")
    duration_seconds: float | None = Field(
        None,
        alias="durationSeconds",
        gt=0,
        description="stop after this long (default: run forever)",
    )


class CameraStreamWorker(BaseTaskWorker[CameraStreamParams]):
    """Pretends to analyse a camera stream, one summary line per second.

    No real camera is opened: frames are simulated so the example runs anywhere.
    """

    def initialize(self, data: CameraStreamParams) -> None:
        self.params = data
        self.frames = 0
        self._wake = threading.Event()

    @run_before_handler
    def connect(self) -> None:
        logger.info("connecting to %s", self.params.rtsp_url)

    @run_main_handler
    def analyse(self) -> None:
        elapsed = 0.0
        while self.params.duration_seconds is None or elapsed < self.params.duration_seconds:
            self.frames += self.params.fix_frame
            logger.info(
                "stream %s: %d frames analysed (fixFrame=%d, threshold=%.2f)",
                self.params.rtsp_url,
                self.frames,
                self.params.fix_frame,
                self.params.threshold,
            )
            self._wake.wait(1.0)
            self._wake.clear()
            elapsed += 1.0

    @update_event_handler
    def on_update(self, data: CameraStreamParams) -> None:
        logger.info(
            "new parameters: rtspUrl=%s fixFrame=%d threshold=%.2f",
            data.rtsp_url,
            data.fix_frame,
            data.threshold,
        )
        self.params = data
        self._wake.set()

    @release_handler
    def disconnect(self) -> None:
        logger.info("closing stream %s after %d frames", self.params.rtsp_url, self.frames)
