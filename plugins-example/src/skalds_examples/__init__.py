"""Example Skalds workers (published as ``skalds.workers`` entry points)."""

from skalds_examples.camera import CameraStreamParams, CameraStreamWorker
from skalds_examples.multistage import MultiStageJobWorker, MultiStageParams, SubTask

__all__ = [
    "CameraStreamParams",
    "CameraStreamWorker",
    "MultiStageJobWorker",
    "MultiStageParams",
    "SubTask",
]
