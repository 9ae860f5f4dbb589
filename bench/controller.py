"""System Controller benchmarks: assign latency, one-shot throughput, node failover.

    python bench/controller.py [--json] [--services]     # alone
    python bench/run.py --json [--services]               # with the runtime benchmarks

* assign latency: ``POST /api/tasks`` sent → the worker's main handler entered (the
  worker writes CLOCK_MONOTONIC, which all processes share on Linux), one task at a
  time. Two paths: ``executor`` given (the API assigns directly) and no executor (the
  dispatcher places it).
* one-shot throughput: 2,000 tasks whose main handler returns at once, posted by 4
  client threads of another process; tasks per second from the first POST to the
  last Finished (as reported on ``taskworker.update``).
* node failover (real services only: a node in another process must share the
  backends): a node running a persistent task is SIGKILLed; seconds until that task
  runs on the other node (the monitor sees the node's heartbeat expire, the
  dispatcher places the task again).

Everything runs on uvicorn on loopback with HTTP clients in another process, as a
user's script would. On the real services the Mongo store runs as ``MONGO_WRITE_LOCKS``
says, by default ``off``: the FerretDB that ``scripts/services`` builds applies each
write atomically, as MongoDB does, so this measures the lock-free compare-and-set
real MongoDB gets; ``MONGO_WRITE_LOCKS=on`` measures the per-task locks a stock
FerretDB needs (key ``mongo_write_locks`` says which ran).
Keys: ``assign_ms`` / ``assign_ms_dispatched`` ({p50, p99, max, n, path}),
``oneshot_per_s`` / ``oneshot_per_s_dispatched``, ``oneshot_per_s_api_only`` (the
controller in CONTROLLER mode: no monitor or dispatcher running), ``node_failover_s``
(null without ``--services``); with ``--services`` the same with a ``_services`` suffix;
``machine_speed`` (``bench/calibrate.py``) says how fast the machine was.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil
from calibrate import machine_speed
from service_urls import CACHE_URL, EVENT_BUS_URL, mongo_url, require_services
from stamp_worker import StampWorker

from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.model.task import TaskLifecycleStatus
from skalds.node.skald import Skald
from skalds.plugins import Backends, make_plugin_manager
from skalds.ports.event_bus import BusMessage
from skalds.shared_subscription import SharedSubscription
from skalds.utils.logging import logger
from skalds_controller import ControllerSettings
from skalds_controller.topics import CONTROLLER_TOPICS

if TYPE_CHECKING:
    import httpx

S = TaskLifecycleStatus
BENCH_DIR = Path(__file__).resolve().parent


def services() -> dict[str, str]:
    """The real services' URLs (exits with the reason when one does not answer)."""
    require_services()
    return {"event_bus_url": EVENT_BUS_URL, "cache_url": CACHE_URL, "store_url": mongo_url()}


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    at99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(at99, 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


class Harness:
    """A node and the controller's API (uvicorn on a free port) on one set of backends.

    Started in the order ``skalds up`` uses: the node first (it forks its fork server,
    then builds the backends from the settings' URLs unless ``backends`` are given),
    and the web stack is imported only after that.
    """

    def __init__(self, backends: Backends | None, **settings: Any) -> None:
        self.settings = ControllerSettings(
            skald_id=f"bench-{uuid.uuid4().hex[:6]}",
            port=0,
            load_entry_points=False,
            max_workers=2500,
            log_level="ERROR",
            log_path=tempfile.mkdtemp(prefix="skalds-bench-logs-"),
            **settings,
        )
        # The installed adapters' plugins (load_entry_points=False leaves out workers)
        plugins = make_plugin_manager(load_entry_points=backends is None)
        self.node = Skald(self.settings, plugin_manager=plugins, backends=backends)
        self.node.register_task_worker(StampWorker)
        self.node.share_events(CONTROLLER_TOPICS)  # as skalds up: one subscription
        self.node.start()
        self.backends = self.node.backends
        import httpx

        from skalds_controller import create_app
        from skalds_controller.server import ControllerServer

        app = create_app(self.settings, backends=self.backends, bus_events=self.node.events)
        self.events = self.node.events  # the bus subscription the process shares
        self.server = ControllerServer(self.settings, app)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        if not self.server.ready.wait(30):
            raise RuntimeError("the API did not start")
        self.url = str(self.server.url)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.tmp = Path(tempfile.mkdtemp(prefix="skalds-bench-", dir="/dev/shm"))

    def post(self, body: dict[str, Any], http: httpx.Client | None = None) -> None:
        res = (http or self.http).post("/api/tasks", json=body)
        if res.status_code != 201:
            raise RuntimeError(f"POST /api/tasks: {res.status_code} {res.text}")

    def status(self, task_id: str) -> S | None:
        task = self.backends.store.get_task(task_id)
        return None if task is None else task.lifecycle_status

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self._thread.join(10)
        self.node.stop()


def _wait(predicate: Callable[[], bool], timeout: float, step: float = 0.0005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def assign_ms(h: Harness, count: int, direct: bool) -> dict[str, Any] | None:
    """POST → main handler entered, one task at a time; None when nothing dispatches."""
    prefix = f"assign-{'d' if direct else 'q'}-{uuid.uuid4().hex[:4]}"
    took = []
    for i in range(count + 5):  # the first 5 warm up
        task_id = f"{prefix}-{i}"
        out = h.tmp / task_id
        body: dict[str, Any] = {
            "id": task_id,
            "className": "StampWorker",
            "attachments": {"out": str(out)},
        }
        if direct:
            body["executor"] = h.node.skald_id
        sent = time.monotonic_ns()
        h.post(body)
        if not _wait(lambda out=out: out.exists() and out.stat().st_size > 0, 10 if i else 30):
            if i == 0 and not direct:
                return None  # no dispatcher runs
            raise RuntimeError(f"task {task_id} did not start")
        if i >= 5:
            took.append((int(out.read_text()) - sent) / 1e6)
        _wait(lambda task_id=task_id: h.status(task_id) is S.FINISHED, 10)
    return {**pct(took), "path": "executor" if direct else "dispatcher"}


class FinishedCounter:
    """Counts tasks reported Finished on ``taskworker.update`` (polling the store would
    load it: the in-memory store copies every task it lists).

    It follows the controller's own subscription, as the controller's SSE clients do,
    rather than a consumer group of its own: on Kafka each group's delivery costs the
    broker about what the publish does, a cost of the benchmark, not of Skalds.
    """

    def __init__(self, events: SharedSubscription, prefix: str) -> None:
        self.prefix = prefix
        self.done: set[str] = set()
        self.last = 0.0
        self.cv = threading.Condition()
        self.events = events
        events.follow(["taskworker.update"], self._on)

    def _on(self, msg: BusMessage) -> None:
        if not (msg.key and msg.key.startswith(self.prefix)):
            return
        if json.loads(msg.value).get("title") == S.FINISHED.value:
            with self.cv:
                self.done.add(msg.key)
                self.last = time.monotonic()
                self.cv.notify_all()

    def wait(self, count: int, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: len(self.done) >= count, timeout)

    def close(self) -> None:
        self.events.unfollow(self._on)


def post_load(url: str, prefix: str, count: int, clients: int, executor: str | None) -> None:
    """Child process: POST ``count`` one-shot tasks with ``clients`` threads; print t0.

    Plain keep-alive ``http.client`` connections, one per thread: the load generator
    shares the machine with what it measures, so it should cost little CPU (httpx
    costs about 1 ms of CPU per request here, which the controller then lacks).
    """
    where = urlsplit(url)
    local = threading.local()
    headers = {"Content-Type": "application/json"}

    def post(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(
                where.hostname or "127.0.0.1", where.port, timeout=60
            )
        body: dict[str, Any] = {"id": f"{prefix}{i}", "className": "StampWorker"}
        if executor:
            body["executor"] = executor
        conn.request("POST", "/api/tasks", json.dumps(body), headers)
        res = conn.getresponse()
        data = res.read()
        if res.status != 201:
            raise RuntimeError(f"POST /api/tasks: {res.status} {data[:500]!r}")

    print(time.monotonic(), flush=True)
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(count)))
    print(time.monotonic(), flush=True)


def oneshot_per_s(
    h: Harness, count: int, direct: bool, clients: int = int(os.environ.get("CLIENTS", "4"))
) -> float:
    """Tasks per second: first POST → the last of ``count`` one-shot tasks Finished.

    The tasks are posted by another process (as a user's script would), so the
    clients do not compete with the controller and the node for this process's GIL.
    """
    prefix = f"oneshot-{'d' if direct else 'q'}-{uuid.uuid4().hex[:4]}-"
    finished = FinishedCounter(h.events, prefix)
    args = [h.url, prefix, str(count), str(clients), h.node.skald_id if direct else ""]
    placing = _dispatcher_counts(h)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    loader = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--post-load", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if loader.returncode != 0:
        raise RuntimeError(f"the posting process failed: {loader.stderr[-2000:]}")
    t0, t_posted = (float(x) for x in loader.stdout.split()[:2])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(  # stderr: a diagnostic, not a figure (the JSON goes to stdout)
        f"  one-shot {'direct' if direct else 'dispatched'}: {count} posted in "
        f"{t_posted - t0:.2f} s ({count / max(t_posted - t0, 1e-9):.0f}/s; "
        f"posting process CPU {cpu:.2f} s)",
        file=sys.stderr,
    )
    if not finished.wait(count, 1800):
        raise RuntimeError(f"only {len(finished.done)} of {count} finished")
    with finished.cv:
        elapsed = max(finished.last - t0, 1e-9)
    finished.close()
    if placing and not direct:
        now = _dispatcher_counts(h)
        print(  # how the dispatcher placed them: as created, or by its passes
            "  dispatcher: " + ", ".join(f"{k} {now[k] - placing.get(k, 0)}" for k in sorted(now)),
            file=sys.stderr,
        )
    return round(count / elapsed, 1)


def _dispatcher_counts(h: Harness) -> dict[str, int]:
    """The dispatcher's counters (passes, assigned, placed on create...), or {} without one."""
    res = h.http.get("/api/system/dispatcher")
    if res.status_code != 200:
        return {}
    return {k: v for k, v in res.json().items() if isinstance(v, int) and not isinstance(v, bool)}


def measure(h: Harness, samples: int, oneshots: int, suffix: str = "") -> dict[str, Any]:
    dispatched = assign_ms(h, samples, direct=False)
    result: dict[str, Any] = {
        f"assign_ms{suffix}": assign_ms(h, samples, direct=True),
        f"assign_ms_dispatched{suffix}": dispatched,
        f"oneshot_per_s{suffix}": oneshot_per_s(h, oneshots, direct=True),
        f"oneshot_per_s_dispatched{suffix}": (
            oneshot_per_s(h, oneshots, direct=False) if dispatched else None
        ),
        f"fork_server{suffix}": h.node.supervisor.runtime.fork_server[1],  # type: ignore[attr-defined]
    }
    return result


def run_embedded(samples: int = 200, oneshots: int = 2000) -> dict[str, Any]:
    """The figures of ``skalds up``'s setup (in-memory backends)."""
    h = Harness(Backends(MemoryEventBus(), MemoryCache(), MemoryStore()))
    try:
        return measure(h, samples, oneshots)
    finally:
        h.close()


def run_api_only(samples: int = 200, oneshots: int = 2000) -> dict[str, Any]:
    """One-shot throughput with the API only (``CONTROLLER`` mode: no monitor, no
    dispatcher), which shows what those cost."""
    h = Harness(Backends(MemoryEventBus(), MemoryCache(), MemoryStore()), mode="CONTROLLER")
    try:
        return {"oneshot_per_s_api_only": oneshot_per_s(h, oneshots, direct=True)}
    finally:
        h.close()


# -- real services ----------------------------------------------------------------------


def _drop_db(name: str) -> None:
    import pymongo

    client: Any = pymongo.MongoClient(mongo_url(), serverSelectionTimeoutMS=3000)
    try:
        client.drop_database(name)
    finally:
        client.close()


def node_failover_s(h: Harness, db_name: str, node_ttl: float | None = None) -> dict[str, Any]:
    """SIGKILL the node running a persistent task → the task Running on the other node.

    The monitor can only see the death when the node's registry field expires, so
    ``node_ttl`` (the killed node's ``NODE_TTL_SECONDS``; default: the default, 2.5 s)
    is the floor.
    """
    from skalds.config.skald_config import SkaldConfig

    if node_ttl is None:
        node_ttl = float(SkaldConfig.model_fields["node_ttl_seconds"].default)
    other = f"bench-victim-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
        "SKALDS_EVENT_BUS": EVENT_BUS_URL,
        "SKALDS_CACHE": CACHE_URL,
        "SKALDS_STORE": mongo_url(),
        "DB_NAME": db_name,
        "LOG_LEVEL": "ERROR",
        "NODE_TTL_SECONDS": str(node_ttl),
    }
    worker = ["--worker", "stamp_worker:StampWorker"]
    victim = subprocess.Popen(
        [sys.executable, "-m", "skalds", "node", "--skald-id", other, *worker],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    task_id = f"failover-{uuid.uuid4().hex[:6]}"
    workers: list[psutil.Process] = []
    try:
        if not _wait(lambda: other in h.backends.cache.hash_get_all("skalds:hash"), 30, 0.05):
            raise RuntimeError(f"node {other} did not come up")
        body = {
            "id": task_id,
            "className": "StampWorker",
            "executor": other,
            "isPersistent": True,
            "attachments": {"forever": True},
        }
        h.post(body)
        if not _wait(lambda: h.status(task_id) is S.RUNNING, 30, 0.01):
            raise RuntimeError(f"{task_id} did not start on {other}")
        time.sleep(1.0)
        workers = psutil.Process(victim.pid).children(recursive=True)  # reaped below
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

        def moved() -> bool:
            task = h.backends.store.get_task(task_id)
            return (
                task is not None
                and task.executor == h.node.skald_id
                and task.lifecycle_status is S.RUNNING
            )

        if not _wait(moved, 30, 0.005):
            return {"seconds": None, "note": f"{task_id} was not re-placed within 30 s"}
        return {"seconds": round(time.monotonic() - t0, 3), "node_ttl_seconds": node_ttl}
    finally:
        victim.kill()
        victim.wait()
        for proc in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def run_services(samples: int = 200, oneshots: int = 2000) -> dict[str, Any]:
    os.environ.setdefault("MONGO_WRITE_LOCKS", "off")  # see the module's docstring
    db_name = f"skalds_bench_{uuid.uuid4().hex[:8]}"
    h = Harness(None, db_name=db_name, **services())
    try:
        result = measure(h, samples, oneshots, suffix="_services")
        result["mongo_write_locks"] = os.environ["MONGO_WRITE_LOCKS"]
        failover = node_failover_s(h, db_name)
        result["node_failover_s"] = failover["seconds"]
        result["node_failover"] = failover
        return result
    finally:
        h.close()
        h.backends.close()
        _drop_db(db_name)


PARTS: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "embedded": run_embedded,
    "api_only": run_api_only,
    "services": run_services,
}


def run_part(part: str, samples: int, oneshots: int) -> dict[str, Any]:
    """Run one part in a process of its own and return its figures.

    Each part starts a node, whose fork server is a copy of the process at that
    moment: after another part that process would hold the web stack and every client
    library, and each task's fork and exit would cost more than under ``skalds up``.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--json"]
    done = subprocess.run(
        [*command, "--samples", str(samples), "--oneshots", str(oneshots)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench part {part!r} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(services: bool, samples: int = 200, oneshots: int = 2000) -> dict[str, Any]:
    """The controller figures for ``bench/run.py`` (``node_failover_s`` needs services)."""
    result = run_part("embedded", samples, oneshots)
    result.update(run_part("api_only", samples, oneshots))
    result["node_failover_s"] = None
    if services:
        result.update(run_part("services", samples, oneshots))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--services", action="store_true", help="also on the real services")
    parser.add_argument("--samples", type=int, default=200, help="tasks timed for latency")
    parser.add_argument("--oneshots", type=int, default=2000, help="tasks for throughput")
    parser.add_argument("--post-load", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.post_load:
        url, prefix, count, clients, executor = args.post_load
        post_load(url, prefix, int(count), int(clients), executor or None)
        return 0
    logger.setLevel("ERROR")
    speed = machine_speed()  # next to the figures: see bench/calibrate.py
    if args.part:
        result = PARTS[args.part](args.samples, args.oneshots)
    else:
        result = run(args.services, args.samples, args.oneshots)
    result["machine_speed"] = speed
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
