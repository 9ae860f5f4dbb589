"""single_process mode (``skalds single FILE``): foreground run, exit codes, persistence."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import read_lines, wait_for

ROOT = Path(__file__).resolve().parents[1]


def yaml_for(tmp_path: Path, persistent: bool = False, **attachments) -> Path:
    path = tmp_path / "single.yml"
    extra = "".join(f"      {k}: {v}\n" for k, v in attachments.items())
    path.write_text(
        "TaskWorkers:\n"
        "  job-1:\n"
        "    className: ProbeWorker\n"
        f"    isPersistent: {str(persistent).lower()}\n"
        "    attachments:\n"
        f"      traceFile: {tmp_path / 'trace'}\n" + extra
    )
    return path


def skalds_single(path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skalds",
            "single",
            str(path),
            "-w",
            "tests.workers:ProbeWorker",
            "--no-entry-points",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_finished_job_exits_zero(tmp_path):
    proc = skalds_single(yaml_for(tmp_path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [x.split(" pid=")[0] for x in read_lines(tmp_path / "trace")] == [
        "initialize start 10",
        "before",
        "main",
        "after",
        "release",
    ]


def test_a_failed_job_exits_non_zero_with_the_reason(tmp_path):
    proc = skalds_single(yaml_for(tmp_path, failIn="main"))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "RuntimeError: boom in main" in err and "Traceback" in err


def test_bad_yaml_exits_two_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("TaskWorkers:\n  job:\n    className: [x\n")
    proc = skalds_single(path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"{path}:4: invalid YAML" in err


def test_an_unknown_class_exits_two_listing_known_ones(tmp_path):
    path = yaml_for(tmp_path)
    path.write_text(path.read_text().replace("ProbeWorker", "Nope"))
    proc = skalds_single(path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "unknown worker className 'Nope'; registered here: ProbeWorker" in err


def test_invalid_attachments_exit_two_naming_the_field(tmp_path):
    proc = skalds_single(yaml_for(tmp_path, fixFrame="lots"))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "task 'job-1'" in err and "fixFrame" in err


def test_sigterm_is_a_cancel_release_runs_and_exit_is_zero(tmp_path):
    proc = skalds_single(yaml_for(tmp_path, mainSeconds=60))
    wait_for(lambda: "main" in read_lines(tmp_path / "trace"), timeout=15)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert read_lines(tmp_path / "trace")[-1] == "release"


def test_a_persistent_worker_is_restarted_until_sigterm(tmp_path):
    proc = skalds_single(yaml_for(tmp_path, persistent=True, failIn="main"))
    wait_for(
        lambda: sum(x.startswith("initialize") for x in read_lines(tmp_path / "trace")) >= 2,
        timeout=20,
    )
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "restarting in" in err
