"""Worker discovery (entry points, explicit registration) and the ``skalds`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skalds.cli import main
from skalds.errors import DuplicateWorkerError, UnknownWorkerError
from skalds.worker.registry import WorkerRegistry
from tests.workers import ProbeWorker

ROOT = Path(__file__).resolve().parents[1]


def test_example_workers_are_found_through_entry_points():
    registry = WorkerRegistry()
    loaded = registry.load_entry_points()
    names = {w.class_name for w in loaded}
    assert {"CameraStreamWorker", "MultiStageJobWorker"} <= names
    entry = registry.get("CameraStreamWorker")
    assert (
        "entry point CameraStreamWorker = skalds_examples.camera:CameraStreamWorker" in entry.source
    )
    assert "skalds-examples" in entry.source


def test_registering_the_same_class_twice_is_harmless():
    registry = WorkerRegistry()
    registry.register(ProbeWorker)
    registry.register(ProbeWorker)
    assert registry.names() == ["ProbeWorker"]


def test_two_classes_with_one_name_is_an_error_naming_both_sources():
    import tests.workers as first

    namespace: dict = {}
    exec(  # a second, different class also called ProbeWorker
        "from tests.workers import ProbeWorker as Base\nclass ProbeWorker(Base):\n    pass\n",
        namespace,
    )
    registry = WorkerRegistry()
    registry.register(first.ProbeWorker, "entry point ProbeWorker (package a)")
    with pytest.raises(DuplicateWorkerError) as info:
        registry.register(namespace["ProbeWorker"], "entry point ProbeWorker (package b)")
    message = str(info.value)
    assert (
        "package a" in message and "package b" in message and "tests.workers.ProbeWorker" in message
    )


def test_an_unknown_class_lists_the_registered_ones():
    registry = WorkerRegistry()
    registry.register(ProbeWorker)
    with pytest.raises(
        UnknownWorkerError, match="unknown worker className 'X'; registered here: ProbeWorker"
    ):
        registry.get("X")


def test_skalds_workers_lists_classes_and_schemas(capsys):
    assert main(["workers"]) == 0
    out = capsys.readouterr().out
    assert "CameraStreamWorker" in out and "rtspUrl: string (required)" in out
    assert "MultiStageJobWorker" in out


def test_skalds_workers_json_includes_schemas_and_explicit_workers(capsys):
    assert main(["workers", "--json", "-w", "tests.workers:ProbeWorker"]) == 0
    data = {w["className"]: w for w in json.loads(capsys.readouterr().out)}
    assert data["ProbeWorker"]["schema"]["required"] == ["traceFile"]
    assert data["ProbeWorker"]["supportsUpdate"] is True
    assert data["MultiStageJobWorker"]["supportsUpdate"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "expected module:Class"),
        ("no_such_module_xyz:Thing", "cannot import no_such_module_xyz"),
        ("tests.workers:Missing", "tests.workers has no Missing"),
    ],
)
def test_bad_worker_options_are_clear_errors(spec, message, caplog):
    assert main(["workers", "-w", spec]) == 2
    assert message in caplog.text


@pytest.mark.parametrize("command", [[], ["edge"], ["node"], ["single"], ["workers"]])
def test_every_command_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "skalds", *command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0
    assert "usage: skalds" in result.stdout


def test_invalid_configuration_is_reported_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    assert main(["workers"]) == 2
    assert "log_level must be one of" in capsys.readouterr().err
