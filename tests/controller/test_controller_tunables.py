"""Dispatcher, monitor and lease timings are controller settings (env or arguments)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from skalds.model.task import TaskLifecycleStatus
from skalds.node import keys
from skalds.ports.cache import HashDelete, HashSet, Set
from skalds.utils.time import now_ms
from skalds_controller import ControllerSettings, create_app
from skalds_controller.background import start_background
from tests.helpers import wait_for
from tests.workers import ProbeWorker

S = TaskLifecycleStatus

TUNABLES = {
    "DISPATCHER_ASSIGN_TIMEOUT": ("dispatcher_assign_timeout", 10.0),
    "DISPATCHER_RECONCILE_INTERVAL": ("dispatcher_reconcile_interval", 5.0),
    "DISPATCHER_RETRY_SWEEP_INTERVAL": ("retry_sweep_interval", 30.0),
    "MONITOR_POLL_INTERVAL": ("monitor_poll_interval", 0.2),
    "MONITOR_STALL_CHECK_INTERVAL": ("monitor_stall_check_interval", 1.0),
    "MONITOR_ORPHAN_SWEEP_INTERVAL": ("monitor_orphan_sweep_interval", 5.0),
    "MONITOR_GRACE_SECONDS": ("monitor_grace_seconds", None),
    "CONTROLLER_LEASE_TTL": ("lease_ttl", 3.0),
}


def test_the_defaults_are_the_documented_ones():
    settings = ControllerSettings(load_entry_points=False)
    for field, default in TUNABLES.values():
        assert getattr(settings, field) == default, field


def test_every_tunable_comes_from_its_env_var(monkeypatch):
    for env in TUNABLES:
        monkeypatch.setenv(env, "0.75")
    settings = ControllerSettings(load_entry_points=False)
    for field, _ in TUNABLES.values():
        assert getattr(settings, field) == 0.75, field


@pytest.mark.parametrize("env", sorted(TUNABLES))
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_tunable_that_is_not_a_positive_number_is_refused(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as err:
        ControllerSettings(load_entry_points=False)
    assert env in str(err.value)


def test_a_lease_ttl_too_short_for_the_lease_handshake_is_refused():
    with pytest.raises(ValidationError, match=r"greater than 0\.2"):
        ControllerSettings(lease_ttl=0.2, load_entry_points=False)


def test_the_background_runs_with_the_settings(skalds_backends):
    settings = ControllerSettings(
        load_entry_points=False,
        dispatcher_assign_timeout=1.5,
        dispatcher_reconcile_interval=2.5,
        retry_sweep_interval=7.0,
        monitor_poll_interval=0.3,
        monitor_stall_check_interval=0.6,
        monitor_orphan_sweep_interval=4.0,
        monitor_grace_seconds=9.0,
        lease_ttl=1.2,
    )
    background = start_background(create_app(settings, backends=skalds_backends).state.context)
    try:
        dispatcher, monitor = background.dispatcher, background.monitor
        assert dispatcher is not None and monitor is not None
        assert (dispatcher.assign_timeout, dispatcher.reconcile_every) == (1.5, 2.5)
        assert dispatcher.retries.sweep_every == 7.0
        assert (monitor.poll_every, monitor.stall_check_every) == (0.3, 0.6)
        assert (monitor.orphan_sweep_every, monitor.grace) == (4.0, 9.0)
        assert [lease.ttl for lease in background.leases] == [1.2, 1.2]
    finally:
        background()


def test_the_assign_timeout_setting_undoes_an_assignment_nobody_picks_up(
    skalds_backends, skalds_node_factory, tmp_path, log_lines, monkeypatch
):
    # Given a node that reported itself, then never reads the bus
    info = {"capacity": {"maxWorkers": 5}, "workers": [{"className": "ProbeWorker"}], "tasks": []}
    skalds_backends.cache.apply(
        [
            HashSet(keys.SKALDS_HASH, {"ghost": str(now_ms())}, 30),
            HashSet(keys.SKALDS_MODE_HASH, {"ghost": "node"}, 30),
            Set(keys.skald_info("ghost"), json.dumps(info), 30),
        ]
    )
    monkeypatch.setenv("DISPATCHER_ASSIGN_TIMEOUT", "0.4")
    app = create_app(ControllerSettings(load_entry_points=False), backends=skalds_backends)
    with TestClient(app) as client:
        body = {
            "id": "t",
            "className": "ProbeWorker",
            "attachments": {"traceFile": str(tmp_path / "t")},
        }
        assert client.post("/api/tasks", json=body).status_code == 201
        store = skalds_backends.store
        wait_for(lambda: (t := store.get_task("t")) and t.executor == "ghost")
        # When a real node comes and the ghost is gone, the task lands there after 0.4 s
        real = skalds_node_factory(workers=[ProbeWorker])
        skalds_backends.cache.apply([HashDelete(keys.SKALDS_HASH, ("ghost",))])
        done = wait_for(lambda: (t := store.get_task("t")).lifecycle_status is S.FINISHED and t)
    assert done.executor == real.skald_id
    assert any("node ghost did not pick the task up within 0.4 s" in x for x in log_lines)
