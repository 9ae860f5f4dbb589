"""Dispatcher and monitor on the real services: Kafka, Redis, FerretDB on loopback.

The node registry and the leases live in a Redis database of their own (other
runs' nodes and controllers must not take part), tasks in a fresh Mongo database.
One node runs as a separate process so that it can really be SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.model.task import TaskLifecycleStatus
from skalds.node import keys
from skalds.plugins import Backends, make_backends, make_plugin_manager
from tests.backends.kafka import KAFKA_ADDRESS, kafka_port_open
from tests.backends.mongo import require_mongo
from tests.backends.redis import connect_cache
from tests.conftest import require_service
from tests.helpers import post_probe_task, read_lines, stored, wait_for
from tests.workers import ProbeWorker

pytestmark = pytest.mark.slow

S = TaskLifecycleStatus
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("SKALDS_TEST_DISPATCH_REDIS_URL", "redis://127.0.0.1:6379/11")

NODE_SCRIPT = """
import sys
from skalds import Skald
from skalds.config.skald_config import SkaldConfig
from tests.workers import ProbeWorker

node_id, bus, cache, store, db = sys.argv[1:6]
config = SkaldConfig(
    skald_id=node_id, event_bus_url=bus, cache_url=cache, store_url=store, db_name=db,
    cancel_grace_seconds=0.5,
)
node = Skald(config)
node.register_task_worker(ProbeWorker)
sys.exit(node.run())
"""


@pytest.fixture
def services() -> Iterator[dict[str, Any]]:
    """Where the backends are: Kafka, a Redis database of ours, a fresh Mongo database."""
    pytest.importorskip("skalds_kafka")
    require_service("Kafka", kafka_port_open(), KAFKA_ADDRESS)
    connect_cache("Redis", REDIS_URL).close()
    mongo_url = require_mongo()
    db_name = f"skalds_dispatch_{uuid.uuid4().hex[:8]}"
    yield {
        "event_bus_url": f"kafka://{KAFKA_ADDRESS}",
        "cache_url": REDIS_URL,
        "store_url": mongo_url,
        "db_name": db_name,
    }
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    with contextlib.suppress(pymongo.errors.PyMongoError):
        client.drop_database(db_name)
    client.close()


@pytest.fixture
def skalds_backends(services) -> Iterator[Backends]:
    """The real backends, shared by the controllers and the in-process nodes of a test."""
    backends = make_backends(make_plugin_manager(load_entry_points=True), SkaldConfig(**services))
    yield backends
    backends.close()


def test_two_controllers_on_real_services_start_each_task_once(
    skalds_backends, skalds_node_factory, controller, tmp_path
):
    for _ in range(2):
        skalds_node_factory(workers=[ProbeWorker], cancel_grace_seconds=0.5)
    (first, first_bg), (second, second_bg) = controller(), controller()
    for i in range(30):
        post_probe_task(first if i % 2 else second, f"t{i}", tmp_path / f"t{i}")
    for i in range(30):
        wait_for(lambda i=i: stored(skalds_backends, f"t{i}").lifecycle_status is S.FINISHED, 30)
        assert read_lines(tmp_path / f"t{i}").count("main") == 1
        assert stored(skalds_backends, f"t{i}").attempts == 1
    dispatchers = [bg.dispatcher for bg in (first_bg, second_bg)]
    assert sorted(d.counts["assigned"] for d in dispatchers if d) == [0, 30]


def test_a_task_placed_as_it_is_created_runs_once_on_real_services(
    skalds_backends, skalds_node_factory, controller, tmp_path
):
    node = skalds_node_factory(workers=[ProbeWorker], cancel_grace_seconds=0.5)
    client, background = controller()
    dispatcher = background.dispatcher
    assert dispatcher is not None
    wait_for(lambda: node.skald_id in (dispatcher._slots or {}), 30)  # a pass counted it
    created = post_probe_task(client, "at-once", tmp_path / "at-once")
    assert (created["lifecycleStatus"], created["executor"]) == ("Assigning", node.skald_id)
    wait_for(lambda: stored(skalds_backends, "at-once").lifecycle_status is S.FINISHED, 30)
    assert read_lines(tmp_path / "at-once").count("main") == 1
    assert stored(skalds_backends, "at-once").attempts == 1
    assert dispatcher.counts["placed_on_create"] == 1


def _kill_groups(trace: Path) -> None:
    """Stop the worker processes a SIGKILLed node left behind (their groups are in the trace)."""
    for line in read_lines(trace):
        if line.startswith("before "):
            fields = dict(part.split("=") for part in line.split()[1:])
            pid, pgid = int(fields["pid"]), int(fields["pgid"])
            if pid == pgid != os.getpgid(0):  # a group of its own, never ours
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)


def test_a_sigkilled_nodes_persistent_task_runs_elsewhere_within_seconds(
    services, skalds_backends, skalds_node_factory, controller, tmp_path
):
    doomed_id = f"doomed-{uuid.uuid4().hex[:6]}"
    args = [services[k] for k in ("event_bus_url", "cache_url", "store_url", "db_name")]
    proc = subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, doomed_id, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: doomed_id in skalds_backends.cache.hash_get_all(keys.SKALDS_HASH), 30)
        heir = skalds_node_factory(workers=[ProbeWorker], cancel_grace_seconds=0.5)
        client, _ = controller()
        long_run = {"mainSeconds": 20}
        post_probe_task(client, "keep", tmp_path / "keep", executor=doomed_id, isPersistent=True,
               attachments=long_run)  # fmt: skip
        post_probe_task(client, "once", tmp_path / "once", executor=doomed_id, attachments=long_run)
        for task_id in ("keep", "once"):
            wait_for(lambda task_id=task_id: "main" in read_lines(tmp_path / task_id), 20)

        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: read_lines(tmp_path / "keep").count("main") == 2, 10, 0.005)
        elapsed = time.monotonic() - killed
        keep = stored(skalds_backends, "keep")
        assert keep.executor == heir.skald_id and keep.lifecycle_status is S.RUNNING
        once = wait_for(lambda: (t := stored(skalds_backends, "once")).error_message and t)
        assert once.lifecycle_status is S.FAILED
        assert once.error_message == f"node {doomed_id} went offline while the task was Running"
        print(f"node SIGKILL → persistent task running elsewhere: {elapsed:.2f} s")
        assert elapsed < 4.0, f"took {elapsed:.2f} s"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for task_id in ("keep", "once"):
            _kill_groups(tmp_path / task_id)
