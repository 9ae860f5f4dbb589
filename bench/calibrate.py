"""How fast this machine is right now, so figures from different days can be compared.

The benchmark machines are shared: the same code gave 304 one-shot tasks/s embedded
one day and 123/s another, with nothing else running in the guest. Each benchmark
run therefore records three small, fixed measurements next to its figures:

* ``py_loop_ms``: a pure-Python loop of one million additions (interpreter speed);
* ``fork_exit_ms``: ``fork()`` of this process and the child's immediate exit, to
  the parent's ``waitpid`` (what starting and reaping a task process costs at least);
* ``cow_fault_us``: the extra cost, per page, of a child that writes 800 pages it
  shares with its parent (copy-on-write faults: most of a task process's cost on a
  virtual machine, where each fault is expensive).

Medians of a few rounds; the whole calibration takes about a second.

    python bench/calibrate.py
"""

from __future__ import annotations

import json
import mmap
import os
import statistics
import time

__all__ = ["machine_speed"]

_PAGE = mmap.PAGESIZE
_WRITTEN_PAGES = 800


def _py_loop_ms() -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i
    return (time.perf_counter() - t0) * 1e3


def _forks_ms(count: int, buffer: mmap.mmap | None) -> float:
    """Mean wall time of ``count`` fork → (write pages) → exit → waitpid, in ms."""
    t0 = time.perf_counter()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                if buffer is not None:
                    for page in range(_WRITTEN_PAGES):
                        buffer[page * _PAGE] = 2
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / count * 1e3


def machine_speed(rounds: int = 5, forks: int = 40) -> dict[str, float]:
    """Return the medians of ``rounds`` rounds of each measurement (see the module)."""
    buffer = mmap.mmap(-1, _WRITTEN_PAGES * _PAGE)
    try:
        for page in range(_WRITTEN_PAGES):
            buffer[page * _PAGE] = 1  # the parent's own pages, shared with each child
        loop, bare, writing = [], [], []
        for _ in range(rounds):
            loop.append(_py_loop_ms())
            bare.append(_forks_ms(forks, None))
            writing.append(_forks_ms(forks, buffer))
    finally:
        buffer.close()
    fork_exit = statistics.median(bare)
    return {
        "py_loop_ms": round(statistics.median(loop), 1),
        "fork_exit_ms": round(fork_exit, 2),
        "cow_fault_us": round(
            max(statistics.median(writing) - fork_exit, 0.0) / _WRITTEN_PAGES * 1e3, 2
        ),
    }


if __name__ == "__main__":
    print(json.dumps(machine_speed()))
