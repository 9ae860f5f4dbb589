"""A MongoStore in use while FerretDB goes away and comes back.

Stops the FerretDB that ``scripts/services`` started (by its pid file, after checking
the process is FerretDB) and starts it again with ``scripts/services up ferretdb``,
which keeps its data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from skalds.errors import BackendUnavailableError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports import TaskQuery
from tests.backends.mongo import require_mongo
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

S = TaskLifecycleStatus
ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("SKALDS_SERVICES_DIR", "/tmp/skalds-services")) / "run"


def ferretdb_process() -> psutil.Process:
    """The FerretDB scripts/services started; skip when there is none we may restart."""
    pid_file = RUN_DIR / "ferretdb.pid"
    if not pid_file.exists():
        pytest.skip("FerretDB was not started by scripts/services: not ours to stop")
    mode_file = RUN_DIR / "ferretdb.mode"
    mode = mode_file.read_text().strip() if mode_file.exists() else "noauth"
    if mode.startswith("auth:") and not os.environ.get("SKALDS_FERRETDB_AUTH"):
        pytest.skip("FerretDB runs with authentication; set SKALDS_FERRETDB_AUTH to restart it")
    if mode == "noauth" and os.environ.get("SKALDS_FERRETDB_AUTH"):
        pytest.skip("SKALDS_FERRETDB_AUTH is set but FerretDB runs without authentication")
    proc = psutil.Process(int(pid_file.read_text().strip()))
    if "ferretdb" not in " ".join([proc.name(), *proc.cmdline()]).lower():
        pytest.skip(f"pid {proc.pid} in {pid_file} is not FerretDB")
    return proc


def stop(proc: psutil.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up", "ferretdb"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_store_in_use_fails_clearly_during_an_outage_and_works_again_after():
    from skalds_mongo import MongoStore

    url = require_mongo()
    if "27017" not in url:
        pytest.skip("SKALDS_TEST_MONGO_URL is not the FerretDB of scripts/services")
    proc = ferretdb_process()
    store = MongoStore(
        url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}", server_selection_timeout_ms=800
    )
    try:
        store.create_task(Task(id="before", class_name="W"))
        stop(proc)
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="27017"):
                store.get_task("before")
            with pytest.raises(BackendUnavailableError, match="27017"):
                store.update_task("before", {"priority": 2}, expected_status={S.CREATED})
            with pytest.raises(BackendUnavailableError):
                store.create_task(Task(id="during", class_name="W"))
            with pytest.raises(BackendUnavailableError):
                store.list_tasks()
            assert store.ping() is False
            assert time.monotonic() - started < 8  # each call gave up in about 0.8 s
        finally:
            start()
        wait_for(store.ping, timeout=15, interval=0.1)
        # the same instance, its data kept, every kind of call working again
        assert store.get_task("before") is not None
        moved = store.update_task(
            "before", {"lifecycle_status": S.ASSIGNING}, expected_status={S.CREATED}
        )
        assert moved is not None and moved.lifecycle_status is S.ASSIGNING
        store.create_task(Task(id="after", class_name="W"))
        assert {t.id for t in store.list_tasks(TaskQuery())} == {"before", "after"}
        assert store.get_task("during") is None
    finally:
        try:
            store.client.drop_database(store.db.name)
        finally:
            store.close()
