"""Skalds benchmarks on the embedded runtime (in-memory backends, local processes).

    python bench/run.py            # human-readable
    python bench/run.py --json     # one JSON object

Measures: update latency (update sent -> @update_event_handler entered), cancel latency
(cancel -> process gone and Cancelled recorded), crash detection (worker SIGKILLed ->
Failed recorded), and density (N idle workers: USS/PSS per worker, node CPU at idle).
Then the System Controller (bench/controller.py): assign latency (POST /api/tasks ->
main handler entered: assign_ms), one-shot throughput (oneshot_per_s) and, with
--services, node failover (node_failover_s).
CLOCK_MONOTONIC is shared by all processes on Linux, so cross-process timestamps compare.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_workers import IdleWorker
from calibrate import machine_speed

from skalds.config.skald_config import SkaldConfig
from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node.skald import Skald
from skalds.plugins import Backends
from skalds.ports.runtime import WorkerOutcome
from skalds.utils.logging import logger

S = TaskLifecycleStatus


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(at(0.99), 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


class Bench:
    def __init__(self, max_workers: int) -> None:
        self.backends = Backends(MemoryEventBus(), MemoryCache(), MemoryStore())
        cfg = SkaldConfig(
            skald_id=f"bench-{uuid.uuid4().hex[:6]}",
            load_entry_points=False,
            max_workers=max_workers,
            cancel_grace_seconds=2.0,
            log_level="ERROR",
        )
        self.node = Skald(cfg, backends=self.backends)
        self.node.register_task_worker(IdleWorker)
        self.node.start()
        self.ended: dict[str, float] = {}
        self.ended_cv = threading.Condition()
        self.node.supervisor.on_task_ended.append(self._ended)
        self.tmp = Path(tempfile.mkdtemp(prefix="skalds-bench-", dir="/dev/shm"))

    def _ended(self, task_id: str, outcome: WorkerOutcome) -> None:
        with self.ended_cv:
            self.ended[task_id] = time.monotonic()
            self.ended_cv.notify_all()

    def start(self, count: int, prefix: str) -> list[str]:
        ids = [f"{prefix}-{i}" for i in range(count)]
        for task_id in ids:
            self.node.store.create_task(
                Task(
                    id=task_id,
                    class_name="IdleWorker",
                    executor=self.node.skald_id,
                    attachments={"out": str(self.tmp / f"{task_id}.txt")},
                )
            )
            assert self.node.supervisor.start_task(
                self.node.store.get_task(task_id),
                {S.CREATED},  # type: ignore[arg-type]
            )
        return ids

    def wait_ended(self, task_id: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        with self.ended_cv:
            while task_id not in self.ended:
                if not self.ended_cv.wait(deadline - time.monotonic()):
                    raise TimeoutError(task_id)
            return self.ended[task_id]

    def close(self) -> None:
        self.node.stop()


def bench_updates(bench: Bench, rounds: int) -> dict[str, float]:
    ids = bench.start(4, "upd")
    time.sleep(0.5)
    sent: dict[int, int] = {}
    for seq in range(rounds):
        task_id = ids[seq % len(ids)]
        out = str(bench.tmp / f"{task_id}.txt")
        sent[seq] = time.monotonic_ns()
        bench.node.update_task(task_id, {"out": out, "seq": seq})
        time.sleep(0.005)
    time.sleep(0.5)
    entered: dict[int, int] = {}
    for task_id in ids:
        for line in (bench.tmp / f"{task_id}.txt").read_text().splitlines():
            seq_s, ts = line.split()
            entered[int(seq_s)] = int(ts)
    for task_id in ids:
        bench.node.cancel_task(task_id)
    for task_id in ids:
        bench.wait_ended(task_id)
    return pct([(entered[s] - sent[s]) / 1e6 for s in sent if s in entered])


def bench_cancel(bench: Bench, count: int) -> dict[str, float]:
    ids = bench.start(count, "cancel")
    time.sleep(0.5)
    took = []
    for task_id in ids:
        t0 = time.monotonic()
        bench.node.cancel_task(task_id)
        took.append((bench.wait_ended(task_id) - t0) * 1000)
    return pct(took)


def bench_crash(bench: Bench, count: int) -> dict[str, float]:
    ids = bench.start(count, "crash")
    time.sleep(0.5)
    took = []
    for task_id in ids:
        pid = bench.node.supervisor.tasks[task_id].pid
        assert pid is not None
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        took.append((bench.wait_ended(task_id) - t0) * 1000)
        task = bench.node.store.get_task(task_id)
        assert task is not None and task.lifecycle_status is S.FAILED, task
    return pct(took)


def bench_density(bench: Bench, count: int) -> dict[str, Any]:
    t0 = time.monotonic()
    ids = bench.start(count, "idle")
    spawn_s = time.monotonic() - t0
    time.sleep(3.0)
    pids = [bench.node.supervisor.tasks[t].pid for t in ids]
    uss, pss = [], []
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        uss.append(info.uss / 2**20)
        pss.append(info.pss / 2**20)
    node = psutil.Process()
    node.cpu_percent(None)
    workers = [psutil.Process(p) for p in pids]
    for w in workers:
        w.cpu_percent(None)
    time.sleep(5.0)
    node_cpu = node.cpu_percent(None)
    workers_cpu = sum(w.cpu_percent(None) for w in workers)
    result = {
        "idle_workers": len(pids),
        "spawn_per_s": round(count / spawn_s, 1),
        "uss_mb_per_worker": round(statistics.median(uss), 2),
        "uss_mb_per_worker_max": round(max(uss), 2),
        "pss_mb_per_worker": round(statistics.median(pss), 2),
        "node_idle_cpu_pct": round(node_cpu, 2),
        "workers_idle_cpu_pct_total": round(workers_cpu, 2),
        "node_rss_mb": round(node.memory_info().rss / 2**20, 1),
    }
    t0 = time.monotonic()
    for task_id in ids:
        bench.node.cancel_task(task_id)
    for task_id in ids:
        bench.wait_ended(task_id, timeout=60)
    result["cancel_all_s"] = round(time.monotonic() - t0, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workers", type=int, default=500, help="idle workers for density")
    parser.add_argument("--updates", type=int, default=400, help="updates to time")
    parser.add_argument("--samples", type=int, default=50, help="cancels and crashes to time")
    parser.add_argument(
        "--services",
        action="store_true",
        help="also run the real-services benchmarks (needs the adapters)",
    )
    parser.add_argument(
        "--no-controller", action="store_true", help="skip the System Controller benchmarks"
    )
    parser.add_argument("--oneshots", type=int, default=2000, help="one-shot tasks to time")
    args = parser.parse_args()
    logger.setLevel("ERROR")
    speed = machine_speed()  # before the node starts, while the machine is quiet
    bench = Bench(max_workers=max(args.workers, args.samples) + 10)
    try:
        result: dict[str, Any] = {
            "update_ms": bench_updates(bench, args.updates),
            "cancel_ms": bench_cancel(bench, args.samples),
            "crash_detect_ms": bench_crash(bench, args.samples),
        }
        result.update(bench_density(bench, args.workers))
        result["fork_server"] = bench.node.supervisor.runtime.fork_server[1]  # type: ignore[attr-defined]
    finally:
        bench.close()
    result["machine"] = {"cpus": psutil.cpu_count(), "python": sys.version.split()[0]}
    result["machine_speed"] = speed
    if args.services:
        from services import run as run_services

        result.update(run_services(pct))
    if not args.no_controller:
        from controller import run as run_controller

        result.update(run_controller(args.services, samples=200, oneshots=args.oneshots))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
