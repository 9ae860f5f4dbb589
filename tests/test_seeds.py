"""The seed documents' worker code runs unmodified (without services: embedded backends)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports import Topic
from skalds.repository.repository import TaskRepository
from tests.helpers import wait_for

SEEDS_DIR = Path(__file__).parent / "seeds"
SHARED_SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
S = TaskLifecycleStatus


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), re.S)


@pytest.mark.skipif(
    not SHARED_SEEDS.exists(), reason="../shared/seeds is not beside the repository"
)
def test_the_copies_are_verbatim():
    intro = python_blocks(SHARED_SEEDS / "intro.md")
    assign = python_blocks(SHARED_SEEDS / "example_node_assign.md")
    update = python_blocks(SHARED_SEEDS / "example_node_update.md")
    expected = {
        "intro_my_worker.py": intro[0],
        "node_assign/my_simple_worker.py": assign[0],
        "node_assign/skald_node.py": assign[1],
        "node_assign/create_task_script.py": assign[2],
        "node_update/my_simple_worker.py": update[0],
        "node_update/skald_node.py": update[1],
        "node_update/create_task_script.py": update[2],
        "node_update/update_task_script.py": update[3],
    }
    for name, code in expected.items():
        assert (SEEDS_DIR / name).read_text() == code, name


def test_my_simple_worker_runs_standalone_and_stops_on_sigterm():
    """`python my_simple_worker.py` (the seeds' __main__ block) needs no services."""
    proc = subprocess.Popen(
        [sys.executable, "my_simple_worker.py"],
        cwd=SEEDS_DIR / "node_assign",
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if sum("RTSP URL: rtsp://example.com/stream, Fix Frame: 10" in x for x in lines) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=10)
        lines.append(rest or "")
    finally:
        proc.kill()
    text = "".join(lines)
    assert "Starting MyWorker with RTSP URL: rtsp://example.com/stream" in text
    assert "cancelled; releasing" in text
    assert proc.returncode == 0


@contextlib.contextmanager
def stdout_appended_to(path: Path) -> Iterator[None]:
    """Point file descriptor 1 (inherited by task processes) at ``path``, opened to append.

    Not capfd: its capture file is shared with the task processes at one file offset,
    and every read rewinds and truncates it, so a line a task process writes meanwhile
    can land half over another. Appends cannot, and reading the file moves nothing.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)


def test_intro_my_worker_runs_on_an_edge_node_and_takes_live_updates(skalds_node_factory, tmp_path):
    from tests.seeds.intro_my_worker import MyWorker

    yml = tmp_path / "all_workers.yml"
    yml.write_text(
        textwrap.dedent(
            """\
            TaskWorkers:
              TaskWorker1:
                isPersistent: true
                attachments:
                  fix_frame: 10
                  rtsp_url: rtsp://192.168.1.1/camera1
                className: MyWorker
            """
        )
    )
    console = tmp_path / "console.txt"
    with stdout_appended_to(console):
        node = skalds_node_factory(workers=[MyWorker], skald_mode="edge", yaml_file=str(yml))

        def printed(text: str) -> bool:
            return console.exists() and text in console.read_text()

        wait_for(lambda: printed("RTSP URL: rtsp://192.168.1.1/camera1, Fix Frame: 10"), timeout=5)
        assert printed("Starting MyWorker with RTSP URL: rtsp://192.168.1.1/camera1\n")
        yml.write_text(yml.read_text().replace("camera1", "camera9").replace("10", "25"))
        wait_for(lambda: printed("RTSP URL: rtsp://192.168.1.1/camera9, Fix Frame: 25"), timeout=5)
        wait_for(
            lambda: node.store.get_task("TaskWorker1").lifecycle_status is S.FINISHED, timeout=15
        )


def test_seed_node_update_flow_on_the_embedded_backends(skalds_node_factory, capfd):
    """The seed scripts' steps: create, update_executor, assign; update_attachments, update."""
    from tests.seeds.node_update.my_simple_worker import MySimpleDataModel, MySimpleWorker

    node = skalds_node_factory(workers=[MySimpleWorker], skald_id="skald_123")
    task_rep = TaskRepository(node.store)
    task = Task(
        id="task_123",
        class_name=MySimpleWorker.__name__,
        source="TestingScript",
        attachments=MySimpleDataModel(rtspUrl="rtsp://example.com/stream", fixFrame=10),
    )
    task_rep.create_task(task)
    task_rep.update_executor(task.id, "skald_123")
    task_event = TaskEvent(task_ids=[task.id])
    node.event_bus.publish(Topic.TASK_ASSIGN, key=task.id, value=task_event.model_dump_json())
    err = ""

    def logged(text: str) -> bool:
        nonlocal err
        err += capfd.readouterr().err
        return text in err

    wait_for(lambda: logged("RTSP URL: rtsp://example.com/stream, Fix Frame: 10"), timeout=5)
    task_rep.update_attachments(
        "task_123", MySimpleDataModel(rtspUrl="rtsp://example.com/new_stream", fixFrame=60)
    )
    node.event_bus.publish(
        Topic.TASK_UPDATE_ATTACHMENT,
        key="task_123",
        value=TaskEvent(task_ids=["task_123"]).model_dump_json(),
    )
    wait_for(
        lambda: logged(
            "Updating MyWorker with RTSP URL: rtsp://example.com/new_stream, Fix Frame: 60"
        ),
        timeout=5,
    )
    wait_for(lambda: logged("RTSP URL: rtsp://example.com/new_stream, Fix Frame: 60"), timeout=5)
