"""The fork server is forked before the node imports its backends' client libraries.

Every task process is a fork of the fork server: the kernel copies the page tables
of everything the server holds at each fork and frees them at each exit, so what
the server has not imported (pymongo, redis-py, confluent-kafka; FastAPI and uvicorn
in ``skalds up``) costs no task anything. A worker runtime plugin records what was
imported when it was asked to start, which is when the local runtime forks.

Run in fresh interpreters: this test process has imported everything long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("pymongo", "redis", "confluent_kafka", "fastapi", "uvicorn")

_PRELUDE = textwrap.dedent(
    """
    import json, sys
    from skalds import hookimpl
    from skalds.ports.runtime import WorkerRuntime
    from skalds.plugins import make_plugin_manager
    from tests.workers import ProbeWorker

    HEAVY = {heavy!r}
    seen = {{}}

    class Forked(Exception):
        pass

    class RecordingRuntime(WorkerRuntime):
        def start(self):
            seen["at_fork"] = [m for m in HEAVY if m in sys.modules]
            raise Forked()  # stop here: nothing else is under test
        def spawn(self, spec): raise NotImplementedError
        def send_update(self, task_id, attachments): raise NotImplementedError
        def set_paused(self, task_id, paused): raise NotImplementedError
        def cancel(self, task_id, grace): raise NotImplementedError
        def running(self): return []
        def close(self, grace): pass

    class Plugin:
        @hookimpl
        def skalds_make_worker_runtime(self, url, config, registry, listener):
            return RecordingRuntime() if url == "record://" else None

    pm = make_plugin_manager()
    pm.register(Plugin())
    SERVICES = dict(
        event_bus_url="kafka://127.0.0.1:1",
        cache_url="redis://127.0.0.1:1/0",
        store_url="mongodb://127.0.0.1:1/",
        runtime_url="record://",
        load_entry_points=False,
    )
    """
)


def _run(body: str) -> dict[str, list[str]]:
    script = _PRELUDE.format(heavy=HEAVY) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_node_forks_its_fork_server_before_importing_the_adapters_clients():
    seen = _run(
        """
        from skalds.config.skald_config import SkaldConfig
        from skalds.errors import BackendUnavailableError
        from skalds.node.skald import Skald

        config = SkaldConfig(skald_id="lean", **SERVICES)
        node = Skald(config, plugin_manager=pm)
        node.register_task_worker(ProbeWorker)
        try:
            node.start()
        except Forked:
            pass
        # What the node builds right after the fork (nothing listens on port 1: the
        # bus fails to connect, after importing its client; the others connect lazily).
        pm.hook.skalds_make_cache(url=config.cache_url, config=config)
        pm.hook.skalds_make_store(url=config.store_url, config=config)
        try:
            pm.hook.skalds_make_event_bus(url=config.event_bus_url, config=config)
        except BackendUnavailableError:
            pass
        seen["after_backends"] = [m for m in HEAVY if m in sys.modules]
        print(json.dumps(seen))
        """
    )
    assert seen["at_fork"] == []
    assert set(seen["after_backends"]) == {"pymongo", "redis", "confluent_kafka"}


def test_skalds_up_forks_before_importing_the_web_stack_and_the_adapters():
    seen = _run(
        """
        from skalds_controller.embedded import EmbeddedSkalds
        from skalds_controller.settings import ControllerSettings

        up = EmbeddedSkalds(ControllerSettings(port=0, **SERVICES), plugin_manager=pm)
        try:
            up.run()
        except Forked:
            pass
        import skalds_controller.server  # what it imports after the fork
        seen["after"] = [m for m in HEAVY if m in sys.modules]
        print(json.dumps(seen))
        """
    )
    assert seen["at_fork"] == []
    assert {"fastapi", "uvicorn"} <= set(seen["after"])
