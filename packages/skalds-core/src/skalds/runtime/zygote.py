"""The fork server: a quiet, single-threaded process that forks task processes.

Every task process is a fork of it, so it has already imported the framework and the
user's workers: starting a task costs a ``fork()``, and its memory pages are shared
with the fork server until written (``gc.freeze()`` keeps the garbage collector from
touching them). It comes in two kinds (``FORK_SERVER``):

* **fresh** (:func:`fresh_main`): a new interpreter that imports only the worker
  classes (by module and name, with the node's ``sys.path``) and this runtime. A
  ``fork()`` copies the page table of every page the parent holds and the exit frees
  them again, so its size is paid by every task: a fresh one holds ~19 MB against
  the node's 27 MB and more (the client libraries, the web stack, whatever the main
  script imported); on a flood of one-shot tasks that made creating a task process
  15-25 % cheaper.
* **copy** (:func:`zygote_main`): a fork of the node itself, taken after the worker
  classes are registered and before the node starts any thread. Needed when a class
  cannot be imported by name (defined in the main script or in a function), and
  chosen when the workers rely on module state the main script set at run time.

Each task process calls ``setsid()``, so its process group holds it and every
process it starts. When a task process exits, the fork server SIGKILLs what is left
of its group *before* reaping it (the zombie keeps the group id reserved, so the
kill cannot hit a stranger), then tells the node the exit code.

The fork server ends when the node does (its control socket closes: it stops every
task, TERM then KILL after the grace period). When both die at once, each task sees
its node pipe close and cancels itself (:mod:`skalds.runtime.child`); a paused one
could not, so on Linux each task process asks for SIGCONT when the fork server dies
(``PR_SET_PDEATHSIG``), which lets it see the pipe close.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module under signal (no stubs)
import contextlib
import gc
import io
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import NoReturn

from skalds.runtime.child import run_worker
from skalds.runtime.protocol import MAX_CONTROL_PACKET, decode, encode
from skalds.utils.logging import configure_logging
from skalds.worker.registry import WorkerRegistry

__all__ = ["FRESH_BOOTSTRAP", "SPEC_ENV", "fresh_main", "worker_targets", "zygote_main"]

SPEC_ENV = "SKALDS_FORK_SERVER_SPEC"
# Run with ``python -c`` in the new interpreter. SIGINT first: a Ctrl-C in the terminal
# reaches the whole process group, and the node, not this server, decides what stops.
# The node's sys.path next, so that skalds and the worker modules import as there.
FRESH_BOOTSTRAP = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "import json, os, sys\n"
    f"sys.path[:] = json.loads(os.environ['{SPEC_ENV}'])['path']\n"
    "from skalds.runtime.zygote import fresh_main\n"
    "fresh_main()\n"
)


# Blocked from fork() until the child has its own handlers (see _Zygote._spawn).
_FORK_BLOCKED = frozenset({_signal.SIGINT, _signal.SIGTERM, _signal.SIGCHLD})
_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2


def _find_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up once here rather than in every task process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _warm_prctl() -> None:
    """Call ``prctl`` once in the fork server (reading, changing nothing).

    ctypes prepares its call machinery on first use; done here, each task process
    shares it instead of copying the pages it writes (about 0.1 MB per task).
    """
    if _PRCTL is None:
        return
    import ctypes

    current = ctypes.c_int(0)
    with contextlib.suppress(Exception):
        _PRCTL(_PR_GET_PDEATHSIG, ctypes.byref(current))


_PRCTL = _find_prctl()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Zygote:
    def __init__(self, ctrl: socket.socket, registry: WorkerRegistry, grace: float) -> None:
        self.sel: selectors.BaseSelector | None = None
        self.ctrl = ctrl
        self.registry = registry
        self.grace = grace
        self.children: dict[int, str] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def serve(self) -> NoReturn:
        _line_buffered_output()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        _warm_prctl()
        # Freeze, never collect: a collection here (or in a worker) would run the
        # finalizers of the node's unreachable objects, e.g. client libraries whose
        # threads do not exist in this process. Frozen objects stay shared, untouched.
        gc.freeze()
        self.sel = sel = selectors.DefaultSelector()
        sel.register(self.ctrl, selectors.EVENT_READ, "ctrl")
        sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        while True:
            try:
                for key, _ in sel.select(timeout=5.0):
                    if key.data == "ctrl":
                        self._on_ctrl()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                self._reap()
            except Exception:  # keep serving: one bad request must not stop every task
                traceback.print_exc()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        print(f"skalds fork server {os.getpid()}: SIGTERM; stopping its tasks", file=sys.stderr)
        self._shutdown()

    def _on_ctrl(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctrl, MAX_CONTROL_PACKET, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            self._shutdown()
        msg = decode(data)
        if msg["t"] == "spawn" and fds:
            self._spawn(msg["task_id"], fds[0])
        for fd in fds[1:]:
            os.close(fd)

    def _spawn(self, task_id: str, fd: int) -> None:
        # Signals stay blocked across the fork until the child has reset its handlers:
        # a SIGTERM (a cancel) reaching the child before that would run this server's
        # shutdown in the child, which would stop the child's copy of every sibling.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _FORK_BLOCKED)
        try:
            pid = os.fork()
        except OSError as exc:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _FORK_BLOCKED)
            os.close(fd)
            self._send(encode("spawn-failed", task_id=task_id, error=str(exc)))
            return
        if pid == 0:
            self._become_worker(fd)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _FORK_BLOCKED)
        os.close(fd)
        self.children[pid] = task_id
        self._send(encode("spawned", task_id=task_id, pid=pid))

    def _become_worker(self, fd: int) -> NoReturn:
        code = 1
        try:
            os.setsid()
            if _PRCTL is not None:  # continued when the fork server dies (see above)
                _PRCTL(_PR_SET_PDEATHSIG, _signal.SIGCONT)
            # The C functions under ``signal``: its Python wrappers convert numbers and
            # handlers to enums, and every object a forked child touches costs it a page
            # copy (about 50 of this process's ~750 per task went to four such calls).
            _signal.set_wakeup_fd(-1)
            for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGCHLD):
                _signal.signal(sig, _signal.SIG_DFL)
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _FORK_BLOCKED)  # see _spawn
            self.ctrl.close()
            if self.sel is not None:
                self.sel.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            code = run_worker(Connection(fd), self.registry)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self, report: bool = True) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            _kill_group(pid, signal.SIGKILL)  # leftovers of the task, before the id is free
            _, status = os.waitpid(pid, 0)
            task_id = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if report:
                self._send(encode("exited", task_id=task_id, pid=pid, code=code))

    def _send(self, data: bytes) -> None:
        try:
            self.ctrl.send(data)
        except OSError:
            self._shutdown()

    def _shutdown(self) -> NoReturn:
        """The node is gone or stopping: stop every task (TERM, grace, KILL), then exit."""
        for pid in list(self.children):
            _kill_group(pid, signal.SIGCONT)
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            self._reap(report=False)
            time.sleep(0.02)
        for pid in list(self.children):
            _kill_group(pid, signal.SIGKILL)
        os._exit(0)


def _line_buffered_output() -> None:
    """Make ``print()`` in task processes reach the node's console line by line.

    A long-lived worker that prints now and then would otherwise, with the console a
    pipe or a file (a service manager, a container log), show its lines only when
    8 KB of them piled up, or when it ends.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not stream.line_buffering:
            with contextlib.suppress(Exception):
                stream.reconfigure(line_buffering=True)


def _detach_inherited_sockets(keep: int) -> None:
    """Point every inherited socket (broker, cache, HTTP listeners...) at /dev/null.

    Task processes must hold no connection of the node's. ``dup2`` instead of
    ``close`` keeps the descriptor numbers taken, so a stale Python object that
    closes "its" descriptor later cannot close a descriptor a worker opened since.
    """
    import stat

    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd in (keep, devnull) or fd < 3:
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:
                continue
    finally:
        os.close(devnull)


def worker_targets(registry: WorkerRegistry) -> tuple[list[list[str]], str]:
    """Say how a fresh interpreter finds each registered class: ``[module, qualname, source]``.

    Returns the targets and, when a class cannot be found by name (then the list is
    incomplete and a fresh fork server cannot run it), why not.
    """
    targets: list[list[str]] = []
    for entry in registry:
        cls = entry.cls
        module, qualname = cls.__module__, cls.__qualname__
        where = f"{entry.class_name} ({module}.{qualname}, from {entry.source})"
        if module == "__main__":
            return targets, f"worker class {where} is defined in the main script"
        if module not in sys.modules:
            return targets, f"worker class {where} names a module that is not imported"
        if "<locals>" in qualname:
            return targets, f"worker class {where} is defined inside a function"
        found: object = sys.modules[module]
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is not cls:
            return targets, f"worker class {where} is not reachable by that name"
        targets.append([module, qualname, entry.source])
    return targets, ""


def fresh_main() -> NoReturn:
    """Entry point of a fresh fork server (run through :data:`FRESH_BOOTSTRAP`).

    Reads its spec from the environment (taken out, so task processes do not see it),
    imports the worker classes, answers ``ready`` (or ``failed`` with the reason) on
    the control socket and serves spawn requests until the node closes it.
    """
    import importlib
    import json

    spec = json.loads(os.environ.pop(SPEC_ENV))
    ctrl = socket.socket(fileno=spec["fd"])
    registry = WorkerRegistry()
    try:
        for module, qualname, source in spec["workers"]:
            found: object = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
            if not isinstance(found, type):
                raise TypeError(f"{module}.{qualname} is not a class")
            registry.register(found, source)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            ctrl.send(encode("failed", error=error))
        traceback.print_exc()
        os._exit(1)
    # The console handler, made here once, is shared by every task process (each one
    # made its own before: ~90 page copies per task).
    configure_logging()
    ctrl.send(encode("ready", pid=os.getpid()))
    _Zygote(ctrl, registry, float(spec["grace"])).serve()


def zygote_main(ctrl: socket.socket, registry: WorkerRegistry, grace: float) -> NoReturn:
    """Serve spawn requests on ``ctrl`` until the node closes it; never returns."""
    if os.path.isdir("/proc/self/fd"):
        _detach_inherited_sockets(ctrl.fileno())
    _Zygote(ctrl, registry, grace).serve()
