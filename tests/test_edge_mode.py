"""Edge mode: workers from a YAML file, hot reload, and clear YAML errors."""

from __future__ import annotations

import textwrap
import time

import pytest

from skalds.errors import YamlConfigError
from skalds.model.task import ModeEnum, TaskLifecycleStatus
from skalds.node.yaml_config import parse_yaml_text
from tests.helpers import read_lines, wait_for
from tests.workers import OtherProbeWorker, ProbeWorker

S = TaskLifecycleStatus


def write(path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def probe_yaml(tmp_path, workers: dict[str, dict]) -> str:
    lines = ["TaskWorkers:"]
    for task_id, attrs in workers.items():
        lines.append(f"  {task_id}:")
        lines.append(f"    className: {attrs.get('className', 'ProbeWorker')}")
        lines.append(f"    isPersistent: {str(attrs.get('isPersistent', True)).lower()}")
        lines.append("    attachments:")
        lines.append(f"      traceFile: {tmp_path / task_id}")
        for key, value in attrs.items():
            if key not in ("className", "isPersistent"):
                lines.append(f"      {key}: {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def edge(skalds_node_factory, tmp_path):
    def start(text: str):
        path = tmp_path / "workers.yml"
        path.write_text(text)
        return skalds_node_factory(
            workers=[ProbeWorker, OtherProbeWorker],
            skald_mode="edge",
            yaml_file=str(path),
            cancel_grace_seconds=1.0,
        ), path

    return start


def test_yaml_workers_start_and_are_recorded_in_the_store(edge, tmp_path):
    node, _ = edge(
        probe_yaml(tmp_path, {"cam-1": {"mainSeconds": 30}, "cam-2": {"mainSeconds": 30}})
    )
    wait_for(lambda: {"cam-1", "cam-2"} <= set(node.supervisor.tasks))
    task = node.store.get_task("cam-1")
    assert task is not None
    assert (task.mode, task.source, task.executor) == (ModeEnum.ACTIVE, "YAML", node.skald_id)
    assert task.lifecycle_status is S.RUNNING


def test_editing_attachments_updates_the_running_worker_live(edge, tmp_path):
    node, path = edge(probe_yaml(tmp_path, {"cam": {"mainSeconds": 30, "fixFrame": 10}}))
    trace = tmp_path / "cam"
    wait_for(lambda: "main" in read_lines(trace))
    pid = node.supervisor.tasks["cam"].pid
    before = path.read_text()
    path.write_text(
        probe_yaml(tmp_path, {"cam": {"mainSeconds": 30, "fixFrame": 25, "label": "edited"}})
    )
    wait_for(lambda: "update edited 25" in read_lines(trace), timeout=5)
    assert node.supervisor.tasks["cam"].pid == pid  # same process, not a restart
    stored = node.store.get_task("cam")
    assert stored is not None and stored.attachments["fixFrame"] == 25
    assert path.read_text() != before  # our edit stands...
    assert "edited" in path.read_text()  # ...and the node never rewrote the file


def test_adding_and_removing_entries_starts_and_stops_workers(edge, tmp_path):
    node, path = edge(
        probe_yaml(tmp_path, {"keep": {"mainSeconds": 30}, "drop": {"mainSeconds": 30}})
    )
    wait_for(lambda: {"keep", "drop"} <= set(node.supervisor.tasks))
    keep_pid = node.supervisor.tasks["keep"].pid
    path.write_text(probe_yaml(tmp_path, {"keep": {"mainSeconds": 30}, "new": {"mainSeconds": 30}}))
    wait_for(
        lambda: "new" in node.supervisor.tasks and "drop" not in node.supervisor.tasks, timeout=8
    )
    assert node.supervisor.tasks["keep"].pid == keep_pid
    assert read_lines(tmp_path / "drop")[-1] == "release"


def test_changing_the_class_name_restarts_the_task(edge, tmp_path):
    node, path = edge(probe_yaml(tmp_path, {"t": {"mainSeconds": 30}}))
    wait_for(lambda: "t" in node.supervisor.tasks)
    first_pid = node.supervisor.tasks["t"].pid
    path.write_text(
        probe_yaml(tmp_path, {"t": {"mainSeconds": 30, "className": "OtherProbeWorker"}})
    )
    wait_for(
        lambda: (t := node.supervisor.tasks.get("t")) and t.class_name == "OtherProbeWorker",
        timeout=8,
    )
    assert node.supervisor.tasks["t"].pid != first_pid
    assert "release" in read_lines(tmp_path / "t")  # the old worker was stopped properly


def test_a_broken_yaml_edit_leaves_running_workers_alone(edge, tmp_path, caplog):
    node, path = edge(probe_yaml(tmp_path, {"steady": {"mainSeconds": 30}}))
    wait_for(lambda: "steady" in node.supervisor.tasks)
    pid = node.supervisor.tasks["steady"].pid
    path.write_text("TaskWorkers:\n  steady:\n    className: [unclosed\n")
    wait_for(lambda: any("invalid YAML" in r.getMessage() for r in caplog.records), timeout=5)
    message = next(r.getMessage() for r in caplog.records if "invalid YAML" in r.getMessage())
    assert str(path) in message and ":4" in message  # file and line
    time.sleep(0.3)
    assert node.supervisor.tasks["steady"].pid == pid


def test_an_invalid_attachment_edit_is_rejected_and_the_worker_keeps_its_values(
    edge, tmp_path, caplog
):
    node, path = edge(probe_yaml(tmp_path, {"cam": {"mainSeconds": 30, "fixFrame": 10}}))
    wait_for(lambda: "main" in read_lines(tmp_path / "cam"))
    path.write_text(probe_yaml(tmp_path, {"cam": {"mainSeconds": 30, "fixFrame": "many"}}))
    wait_for(lambda: any("fixFrame" in r.getMessage() for r in caplog.records), timeout=5)
    message = next(r.getMessage() for r in caplog.records if "fixFrame" in r.getMessage())
    assert "worker 'cam'" in message and str(path) in message and "integer" in message
    assert not any(line.startswith("update") for line in read_lines(tmp_path / "cam"))
    assert node.supervisor.tasks["cam"].attachments["fixFrame"] == 10


def test_an_unknown_class_name_is_reported_and_other_workers_run(edge, tmp_path, caplog):
    text = probe_yaml(
        tmp_path, {"ghost": {"className": "NoSuchWorker"}, "real": {"mainSeconds": 30}}
    )
    node, path = edge(text)
    wait_for(lambda: "real" in node.supervisor.tasks)
    message = next(r.getMessage() for r in caplog.records if "NoSuchWorker" in r.getMessage())
    assert "worker 'ghost'" in message and f"{path}:2" in message and "ProbeWorker" in message


def test_malformed_yaml_names_file_and_line():
    with pytest.raises(YamlConfigError) as info:
        parse_yaml_text("TaskWorkers:\n  a:\n    className: X\n  b: [oops\n", "w.yml")
    assert str(info.value).startswith("w.yml:5: invalid YAML") or str(info.value).startswith(
        "w.yml:4"
    )


def test_yaml_without_task_workers_is_refused():
    with pytest.raises(YamlConfigError, match="no 'TaskWorkers' key"):
        parse_yaml_text("Workers: {}\n", "w.yml")


def test_bad_entries_name_the_worker_and_line():
    parsed = parse_yaml_text(
        textwrap.dedent(
            """\
            TaskWorkers:
              ok:
                className: A
              no-class:
                attachments: {}
              bad-attachments:
                className: A
                attachments: [1, 2]
              bad-flag:
                className: A
                isPersistent: sometimes
            """
        ),
        "w.yml",
    )
    assert [w.task_id for w in parsed.workers] == ["ok"]
    errors = [str(e) for e in parsed.errors]
    assert errors == [
        "w.yml:4: worker 'no-class': missing 'className' (the registered worker class to run)",
        "w.yml:6: worker 'bad-attachments': 'attachments' must be a mapping of parameters",
        "w.yml:9: worker 'bad-flag': 'isPersistent' must be true or false, not 'sometimes'",
    ]
