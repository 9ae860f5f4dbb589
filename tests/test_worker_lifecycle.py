"""The TaskWorker lifecycle, run in-process with ``worker.start()`` (no services)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from skalds.errors import AttachmentValidationError, WorkerDefinitionError
from skalds.model.task import TaskLifecycleStatus
from skalds.worker.baseclass import AbstractTaskWorker, BaseTaskWorker, run_main_handler
from skalds.worker.registry import WorkerRegistry
from tests.helpers import read_lines
from tests.workers import ProbeParams, ProbeWorker

S = TaskLifecycleStatus


def run_probe(tmp_path: Path, **params) -> tuple[TaskLifecycleStatus, list[str], ProbeWorker]:
    trace = tmp_path / "trace.txt"
    worker = ProbeWorker()
    worker.initialize(ProbeParams(trace=str(trace), **params))
    status = worker.start()
    lines = [line.split(" pid=")[0] for line in read_lines(trace)]
    return status, lines, worker


def test_handlers_run_in_order_and_release_runs_last(tmp_path):
    status, lines, _ = run_probe(tmp_path)
    assert status is S.FINISHED
    assert lines == ["initialize start 10", "before", "main", "after", "release"]


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("before", ["before", "release"]),
        ("main", ["before", "main", "release"]),
        ("after", ["before", "main", "after", "release"]),
        ("release", ["before", "main", "after", "release"]),
    ],
)
def test_an_exception_in_a_handler_fails_the_task_and_release_still_runs(tmp_path, stage, expected):
    status, lines, worker = run_probe(tmp_path, fail_in=stage)
    assert status is S.FAILED
    assert lines[1:] == expected
    assert worker._failure is not None
    error, tb = worker._failure
    assert error == f"RuntimeError: boom in {stage}"
    assert "Traceback" in tb and "_maybe_fail" in tb


def test_error_handler_receives_the_exception(tmp_path):
    seen: list[BaseException] = []

    class Custom(ProbeWorker):
        def _error_handler(self, exc: BaseException) -> None:
            seen.append(exc)

    worker = Custom()
    worker.initialize(ProbeParams(trace=str(tmp_path / "t"), fail_in="main"))
    assert worker.start() is S.FAILED
    assert [str(e) for e in seen] == ["boom in main"]


def test_sigterm_cancels_the_task_and_runs_release(tmp_path):
    trace = tmp_path / "trace.txt"
    worker = ProbeWorker()
    worker.initialize(ProbeParams(trace=str(trace), main_seconds=30))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    status = worker.start()
    assert status is S.CANCELLED
    assert [line.split(" pid=")[0] for line in read_lines(trace)][-2:] == ["main", "release"]
    # the node's own SIGTERM handling is restored afterwards
    assert signal.getsignal(signal.SIGTERM) is not worker._on_sigterm


def test_attachments_are_accepted_by_field_name_or_alias():
    by_alias = ProbeWorker.validate_attachments({"traceFile": "/t", "fixFrame": 5})
    by_name = ProbeWorker.validate_attachments({"trace": "/t", "fix_frame": 5})
    assert by_alias == by_name
    assert by_alias.fix_frame == 5


def test_invalid_attachments_name_the_field_and_why():
    with pytest.raises(AttachmentValidationError) as info:
        ProbeWorker.validate_attachments({"traceFile": "/t", "fixFrame": "lots"}, task_id="cam-1")
    err = info.value
    assert err.task_id == "cam-1"
    assert [e["field"] for e in err.errors] == ["fixFrame"]
    assert "cam-1" in str(err) and "fixFrame" in str(err) and "integer" in str(err)


def test_a_missing_required_field_is_named():
    with pytest.raises(AttachmentValidationError, match="traceFile: Field required"):
        ProbeWorker.validate_attachments({"fixFrame": 3})


def test_the_model_comes_from_the_generic_parameter():
    assert ProbeWorker.data_model() is ProbeParams

    class Deeper(ProbeWorker):
        pass

    assert Deeper.data_model() is ProbeParams


def test_update_handler_gets_a_validated_model(tmp_path):
    trace = tmp_path / "t"
    worker = ProbeWorker()
    worker.initialize(ProbeParams(trace=str(trace)))
    worker.handle_update_message({"traceFile": str(trace), "label": "new", "fixFrame": 60})
    assert read_lines(trace)[-1] == "update new 60"
    assert worker.params.fix_frame == 60


def test_a_class_without_main_handler_is_rejected_at_registration():
    class P(BaseModel):
        x: int = 1

    class NoMain(BaseTaskWorker[P]):
        pass

    with pytest.raises(WorkerDefinitionError, match="NoMain has no @run_main_handler"):
        WorkerRegistry().register(NoMain)


def test_a_class_without_a_model_is_rejected_at_registration():
    class Untyped(AbstractTaskWorker):  # type: ignore[type-arg]
        @run_main_handler
        def go(self) -> None:
            pass

    with pytest.raises(WorkerDefinitionError, match="does not declare its attachments model"):
        WorkerRegistry().register(Untyped)


def test_something_that_is_not_a_worker_is_rejected():
    with pytest.raises(WorkerDefinitionError, match="is not a TaskWorker class"):
        WorkerRegistry().register(dict)
