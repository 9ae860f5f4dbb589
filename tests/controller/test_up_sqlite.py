"""``skalds up --db``: the tasks are kept in a SQLite file and outlive the process."""

from __future__ import annotations

import re

import httpx

from skalds.cli import main
from tests.controller.test_up import Up, run_example_tasks
from tests.helpers import wait_for

NODE_LINE = re.compile(r"^Skalds is up: .* and node (\S+)$", re.MULTILINE)


def _node_id(up: Up) -> str:
    match = NODE_LINE.search("".join(up.out))
    assert match, up.text()
    return match.group(1)


def test_up_with_a_db_keeps_the_tasks_and_resumes_the_persistent_ones_after_a_restart(tmp_path):
    db = tmp_path / "tasks.db"
    # Given skalds up on a SQLite file that ran a job to the end and runs a camera stream
    up = Up(tmp_path, "--db", "tasks.db")
    try:
        url = up.url()
        banner = "".join(up.out)
        assert f"database   {db}" in banner and "tasks kept in SQLite" in banner
        node_id = _node_id(up)
        run_example_tasks(url, node_id)
    finally:
        assert up.terminate() == 0, up.text()
    assert db.exists()
    cam_log = tmp_path / "logs" / "cam-1.log"
    assert cam_log.read_text().count("connecting to rtsp://camera/1") == 1

    # When it starts again on the same file (named by SKALDS_DB this time)
    up = Up(tmp_path, SKALDS_DB=str(db))
    try:
        url = up.url()
        # Then it is the same node, the tasks are still listed, and the stream runs again
        assert _node_id(up) == node_id
        with httpx.Client(base_url=url, timeout=10) as api:
            listed = api.get("/api/tasks").json()["items"]
            status = {t["id"]: t["lifecycleStatus"] for t in listed}
            assert status == {"job-1": "Finished", "cam-1": "Running"}

            def alive() -> bool:
                return bool(api.get("/api/tasks/cam-1/heartbeat").json()["alive"])

            wait_for(alive, timeout=20)
        wait_for(lambda: cam_log.read_text().count("connecting to rtsp://camera/1") == 2)
    finally:
        assert up.terminate() == 0, up.text()


def test_up_with_a_db_in_a_missing_directory_says_which_path(tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "tasks.db"
    assert main(["up", "--db", str(missing), "--no-entry-points", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot open the SQLite database {missing}" in err


def test_up_refuses_db_and_mongo_together(capsys):
    args = ["up", "--db", "x.db", "--mongo", "mongodb://h/", "--no-entry-points"]
    assert main(args) == 2
    assert "--db and --mongo both name the store" in capsys.readouterr().err
