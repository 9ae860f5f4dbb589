"""The plugin interface: every hook spec is documented and works through the plugin manager."""

from __future__ import annotations

import inspect

import pytest

from skalds import hookimpl, hookspecs
from skalds.config.skald_config import SkaldConfig
from skalds.errors import UnknownBackendError
from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node.skald import Skald
from skalds.plugins import make_backends, make_plugin_manager
from skalds.ports import Topic
from tests.helpers import wait_for
from tests.workers import ProbeWorker

HOOKS = [
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("skalds_")
]


def test_the_hooks_are_the_ones_we_document():
    assert sorted(HOOKS) == sorted(
        [
            "skalds_make_event_bus",
            "skalds_make_cache",
            "skalds_make_store",
            "skalds_make_worker_runtime",
            "skalds_register_workers",
            "skalds_task_status_changed",
        ]
    )


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_spec_is_typed_and_documented(name):
    func = getattr(hookspecs, name)
    doc = inspect.getdoc(func) or ""
    assert doc.splitlines()[0].endswith("."), "one summary line"
    for param in inspect.signature(func).parameters:
        assert f":param {param}:" in doc, f"{name} documents {param}"
    assert "return" in inspect.signature(func).return_annotation or func.__annotations__["return"]


def test_memory_backends_answer_for_memory_urls_and_are_shared_by_name():
    pm = make_plugin_manager(load_entry_points=False)
    a = make_backends(pm, SkaldConfig())
    b = make_backends(pm, SkaldConfig())
    assert isinstance(a.event_bus, MemoryEventBus) and isinstance(a.cache, MemoryCache)
    assert isinstance(a.store, MemoryStore)
    assert a.store is b.store  # one process, one memory:// store
    other = make_backends(make_plugin_manager(load_entry_points=False), SkaldConfig())
    assert other.store is not a.store  # but never global across plugin managers


def test_an_unknown_scheme_names_the_extra_to_install():
    pm = make_plugin_manager(load_entry_points=False)
    cfg = SkaldConfig(event_bus_url="kafka://127.0.0.1:9092")
    if pm.hook.skalds_make_event_bus(url=cfg.event_bus_url, config=cfg) is None:
        with pytest.raises(UnknownBackendError, match=r'pip install "skalds\[kafka\]"'):
            make_backends(pm, cfg)
    with pytest.raises(UnknownBackendError, match="nosuch://"):
        make_backends(pm, SkaldConfig(store_url="nosuch://x"))


def test_a_plugin_backend_takes_over_its_scheme():
    custom = MemoryStore()

    class Plugin:
        @hookimpl
        def skalds_make_store(self, url):
            return custom if url.startswith("custom://") else None

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    assert make_backends(pm, SkaldConfig(store_url="custom://x")).store is custom
    assert make_backends(pm, SkaldConfig()).store is not custom


def test_a_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def skalds_make_evnt_bus(self, url):
            return None

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Typo())
    with pytest.raises(Exception, match="skalds_make_evnt_bus"):
        pm.check_pending()


def test_register_workers_hook_and_status_hook(skalds_backends, tmp_path):
    seen: list[tuple[str, str]] = []

    class Plugin:
        @hookimpl
        def skalds_register_workers(self):
            return [ProbeWorker]

        @hookimpl
        def skalds_task_status_changed(self, task_id, status):
            seen.append((task_id, status))

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    node = Skald(
        SkaldConfig(skald_id="hooked", load_entry_points=False),
        plugin_manager=pm,
        backends=skalds_backends,
    )
    node.start()
    try:
        assert node.registry.names() == ["ProbeWorker"]
        task = Task(
            id="h1",
            class_name="ProbeWorker",
            executor="hooked",
            attachments={"traceFile": str(tmp_path / "t")},
        )
        node.store.create_task(task)
        node.event_bus.publish(
            Topic.TASK_ASSIGN, "h1", TaskEvent(task_ids=["h1"]).model_dump_json()
        )
        wait_for(lambda: ("h1", "Finished") in seen)
        assert seen[:2] == [("h1", "Running"), ("h1", "Finished")]
    finally:
        node.stop()


def test_worker_runtime_hook_picks_the_runtime(skalds_backends):
    from skalds.errors import ConfigError

    pm = make_plugin_manager(load_entry_points=False)
    node = Skald(
        SkaldConfig(runtime_url="k8s://cluster", load_entry_points=False),
        plugin_manager=pm,
        backends=skalds_backends,
    )
    with pytest.raises(
        ConfigError, match="no plugin provides a worker runtime for 'k8s://cluster'"
    ):
        node.start()


def test_status_changes_are_published_on_taskworker_update(skalds_node_factory, tmp_path):
    from skalds.ports import BusMessage

    node = skalds_node_factory(workers=[ProbeWorker])
    got: list[BusMessage] = []
    sub = node.event_bus.subscribe([Topic.TASKWORKER_UPDATE], got.append, group="watcher")
    try:
        node.store.create_task(
            Task(
                id="pub",
                class_name="ProbeWorker",
                executor=node.skald_id,
                attachments={"traceFile": str(tmp_path / "t")},
            )
        )
        node.event_bus.publish(
            Topic.TASK_ASSIGN, "pub", TaskEvent(task_ids=["pub"]).model_dump_json()
        )
        wait_for(lambda: len(got) >= 2)
        titles = [TaskEvent.model_validate_json(m.value).title for m in got]
        assert titles[:2] == [TaskLifecycleStatus.RUNNING.value, TaskLifecycleStatus.FINISHED.value]
        assert all(m.key == "pub" for m in got)
    finally:
        sub.close()
