"""``skalds task ...`` against a running API (uvicorn on a free port, a real node)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.cli import main
from skalds.cli._attachments import UsageError, apply_sets, parse_value
from skalds_controller import ControllerSettings, create_app
from skalds_controller.server import ControllerServer
from tests.helpers import read_lines, wait_for

ROOT = Path(__file__).resolve().parents[2]


def start_server(
    settings: ControllerSettings, backends
) -> tuple[ControllerServer, threading.Thread]:
    server = ControllerServer(settings, create_app(settings, backends=backends))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(10), "the API did not start"
    return server, thread


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api(skalds_backends, node, monkeypatch) -> Iterator[str]:
    """The URL of an API on the test backends (node ``node`` runs ProbeWorker)."""
    monkeypatch.delenv("SKALDS_API_TOKEN", raising=False)
    monkeypatch.delenv("SKALDS_API_URL", raising=False)
    settings = ControllerSettings(load_entry_points=False, port=0, log_level="WARNING")
    server, thread = start_server(settings, skalds_backends)
    assert server.url is not None
    yield server.url
    server.stop()
    thread.join(10)


def task(api, *args: str) -> int:
    return main(["task", *args, "--url", api])


def probe(tmp_path, task_id: str) -> list[str]:
    return ["--id", task_id, "--set", f"traceFile={tmp_path / task_id}"]


def test_create_with_set_runs_the_task_and_wait_follows_it_to_finished(api, node, tmp_path, capsys):
    code = task(
        api,
        "create",
        "ProbeWorker",
        *probe(tmp_path, "t1"),
        "--set",
        "fixFrame=12",
        "--set",
        "label=from-cli",
        "--executor",
        node.skald_id,
        "--wait",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"created task t1 (ProbeWorker on {node.skald_id})" in out
    assert "Finished" in out.splitlines()[-1]
    assert "initialize from-cli 12" in read_lines(tmp_path / "t1")


def test_json_with_wait_keeps_stdout_parseable(api, node, tmp_path, capsys):
    args = [*probe(tmp_path, "j1"), "--executor", node.skald_id, "--wait", "--json"]
    assert task(api, "create", "ProbeWorker", *args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["lifecycleStatus"] == "Finished"
    assert "created task j1" in captured.err and "Finished" in captured.err


def test_wait_reports_a_failed_task_with_its_reason_and_exit_code_4(api, node, tmp_path, capsys):
    code = task(
        api,
        "create",
        "ProbeWorker",
        *probe(tmp_path, "bad"),
        "--set",
        "failIn=main",
        "--executor",
        node.skald_id,
        "--wait",
    )
    assert code == 4
    last = capsys.readouterr().out.splitlines()[-1]
    assert "Failed" in last and "boom in main" in last


def test_wait_gives_up_after_the_timeout_with_exit_code_5(api, node, tmp_path, capsys):
    args = [*probe(tmp_path, "slow"), "--set", "mainSeconds=30", "--executor", node.skald_id]
    code = task(api, "create", "ProbeWorker", *args, "--wait", "--timeout", "0.5")
    assert code == 5
    assert "gave up waiting after 0.5 s; the task is Running" in capsys.readouterr().out


def test_a_file_gives_the_attachments_and_set_applies_on_top(api, node, tmp_path, capsys):
    attachments = tmp_path / "attachments.json"
    attachments.write_text(json.dumps({"traceFile": str(tmp_path / "f1"), "label": "file"}))
    code = task(
        api,
        "create",
        "ProbeWorker",
        "--id",
        "f1",
        "--file",
        str(attachments),
        "--set",
        "fixFrame=7",
        "--executor",
        node.skald_id,
        "--wait",
    )
    assert code == 0, capsys.readouterr()
    assert "initialize file 7" in read_lines(tmp_path / "f1")


def test_list_is_a_table_with_a_page_footer_and_filters(api, node, tmp_path, capsys):
    for task_id, seconds in (("run-1", 30), ("done-1", 0)):
        args = [*probe(tmp_path, task_id), "--set", f"mainSeconds={seconds}"]
        assert task(api, "create", "ProbeWorker", *args, "--executor", node.skald_id) == 0
    wait_for(lambda: "main" in read_lines(tmp_path / "run-1"))
    wait_for(lambda: "release" in read_lines(tmp_path / "done-1"))
    capsys.readouterr()

    assert task(api, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "CLASS", "STATUS", "EXECUTOR", "PRIO", "UPDATED"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["run-1"][1:4] == ["ProbeWorker", "Running", node.skald_id]
    assert lines[-1] == "page 1 of 1, 2 task(s)"

    assert task(api, "list", "--status", "Running") == 0
    out = capsys.readouterr().out
    assert "run-1" in out and "done-1" not in out
    assert task(api, "list", "--id-prefix", "nothing-") == 0
    assert capsys.readouterr().out.strip() == "no tasks match"


def test_show_prints_the_fields_and_the_attachments(api, node, tmp_path, capsys):
    task(api, "create", "ProbeWorker", *probe(tmp_path, "s1"), "--executor", node.skald_id)
    capsys.readouterr()
    assert task(api, "show", "s1") == 0
    out = capsys.readouterr().out
    assert "class         ProbeWorker" in out and f"executor      {node.skald_id}" in out
    assert f'"traceFile": "{tmp_path / "s1"}"' in out
    assert task(api, "show", "s1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["className"] == "ProbeWorker"


def test_update_changes_fields_and_the_running_worker_gets_them(api, node, tmp_path, capsys):
    args = [*probe(tmp_path, "u1"), "--set", "mainSeconds=30", "--executor", node.skald_id]
    task(api, "create", "ProbeWorker", *args)
    wait_for(lambda: "main" in read_lines(tmp_path / "u1"))
    assert task(api, "update", "u1", "--set", "label=live", "--set", "fixFrame=33") == 0
    out = capsys.readouterr().out
    assert "updated task u1 (attachments version 1); the running worker applied them" in out
    wait_for(lambda: "update live 33" in read_lines(tmp_path / "u1"))
    assert task(api, "show", "u1") == 0
    assert "attachments   version 1, worker applied the same" in capsys.readouterr().out


def test_show_says_which_attachments_version_the_worker_applied(api, node, tmp_path, capsys):
    args = [*probe(tmp_path, "v1"), "--set", "mainSeconds=30", "--executor", node.skald_id]
    assert task(api, "create", "ProbeWorker", *args, "--wait", "--until", "running") == 0
    assert task(api, "pause", "v1") == 0
    assert task(api, "update", "v1", "--set", "label=later") == 0
    out = capsys.readouterr().out
    assert "updated task v1 (attachments version 1); it is paused" in out
    assert task(api, "show", "v1") == 0
    assert "attachments   version 1, worker applied 0" in capsys.readouterr().out
    assert task(api, "resume", "v1") == 0
    wait_for(lambda: "update later 10" in read_lines(tmp_path / "v1"))
    capsys.readouterr()

    def applied() -> bool:
        task(api, "show", "v1")
        return "attachments   version 1, worker applied the same" in capsys.readouterr().out

    wait_for(applied)


def test_pause_resume_and_cancel_report_the_new_status(api, node, tmp_path, capsys):
    args = [*probe(tmp_path, "p1"), "--set", "mainSeconds=30", "--executor", node.skald_id]
    assert task(api, "create", "ProbeWorker", *args, "--wait", "--until", "running") == 0
    capsys.readouterr()
    assert task(api, "pause", "p1") == 0
    assert capsys.readouterr().out.strip() == "paused task p1 (now Paused)"
    assert task(api, "resume", "p1") == 0
    assert capsys.readouterr().out.strip() == "resumed task p1 (now Running)"
    assert task(api, "cancel", "p1") == 0
    assert capsys.readouterr().out.strip() == "cancelled task p1 (now Cancelled)"
    wait_for(lambda: "release" in read_lines(tmp_path / "p1"))


def test_api_errors_show_the_code_and_each_field_with_exit_code_1(api, node, tmp_path, capsys):
    code = task(api, "create", "ProbeWorker", "--set", "fixFrame=many")
    assert code == 1
    err = capsys.readouterr().err
    assert "skalds: VALIDATION_ERROR: attachments do not fit ProbeWorker" in err
    assert "  fixFrame: 'many' is not of type 'integer'" in err
    assert "  (attachments): 'traceFile' is a required property" in err

    assert task(api, "create", "NoSuchWorker") == 1
    err = capsys.readouterr().err
    assert "unknown className 'NoSuchWorker'" in err and "known: ProbeWorker" in err

    assert task(api, "show", "ghost") == 1
    assert "skalds: TASK_NOT_FOUND: task 'ghost' not found" in capsys.readouterr().err
    assert task(api, "pause", "ghost") == 1


def test_a_number_where_a_string_belongs_gets_a_quoting_hint(api, node, tmp_path, capsys):
    assert task(api, "create", "ProbeWorker", "--set", "traceFile=1") == 1
    assert "quote it for a string: --set 'key=\"1\"'" in capsys.readouterr().err


def test_an_unreachable_api_is_exit_code_3_with_what_to_do(capsys, unused_port):
    assert main(["task", "list", "--url", f"http://127.0.0.1:{unused_port}"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the controller" in err and "skalds up" in err


def test_malformed_set_options_are_exit_code_2(api, capsys):
    assert task(api, "create", "ProbeWorker", "--set", "novalue") == 2
    assert "expected key=value" in capsys.readouterr().err
    assert task(api, "update", "x") == 2
    assert "nothing to update" in capsys.readouterr().err


def test_the_token_comes_from_the_option_or_the_environment(
    skalds_backends, node, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("SKALDS_API_URL", raising=False)
    settings = ControllerSettings(
        load_entry_points=False, port=0, api_token="s3cret", log_level="WARNING"
    )
    server, thread = start_server(settings, skalds_backends)
    try:
        monkeypatch.delenv("SKALDS_API_TOKEN", raising=False)
        assert main(["task", "list", "--url", str(server.url)]) == 1
        err = capsys.readouterr().err
        assert "UNAUTHORIZED" in err and "SKALDS_API_TOKEN" in err
        assert main(["task", "list", "--url", str(server.url), "--token", "s3cret"]) == 0
        monkeypatch.setenv("SKALDS_API_TOKEN", "s3cret")
        assert main(["task", "list", "--url", str(server.url)]) == 0
    finally:
        server.stop()
        thread.join(10)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"10"', "10"),
        ("rtsp://cam/1", "rtsp://cam/1"),
        ("NaN", "NaN"),
        ("", ""),
    ],
)
def test_set_values_are_json_when_they_parse_else_strings(text, value):
    assert parse_value(text) == value


def test_dotted_keys_build_nested_objects_on_top_of_the_base():
    base = {"a": {"keep": 1}, "b": 2}
    assert apply_sets(base, ["a.b.c=3", "b=x", "d=1=2"]) == {
        "a": {"keep": 1, "b": {"c": 3}},
        "b": "x",
        "d": "1=2",
    }
    assert base == {"a": {"keep": 1}, "b": 2}  # the base is not changed
    with pytest.raises(UsageError, match="b is 2, not an object"):
        apply_sets(base, ["b.c=1"])
    with pytest.raises(UsageError, match="empty key"):
        apply_sets(base, ["a..b=1"])


@pytest.mark.parametrize(
    "command",
    ["create", "list", "show", "update", "cancel", "pause", "resume", "requeue", "delete", "logs"],
)
def test_every_task_command_has_help_with_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["task", command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: skalds task {command}" in out
    assert "4  --wait: the task ended Failed or Cancelled" in out


def test_the_task_command_runs_as_a_module_too():
    result = subprocess.run(
        [sys.executable, "-m", "skalds", "task", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and "usage: skalds task" in result.stdout
