"""Local worker runtime: task processes forked by a fork server, watched by one thread.

The supervisor thread waits (epoll) on every worker pipe and on the fork server's
control socket, so a worker's exit is seen the moment its pipe closes, not at the
next poll, and cancel deadlines (SIGKILL after the grace period) are timers of the
same loop.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError, SkaldsError
from skalds.model.task import TaskLifecycleStatus
from skalds.ports.runtime import WorkerListener, WorkerOutcome, WorkerRuntime, WorkerSpec
from skalds.runtime.protocol import MAX_CONTROL_PACKET, decode, encode
from skalds.utils.logging import logger
from skalds.worker.registry import WorkerRegistry

__all__ = ["LocalRuntime", "describe_exit"]

_EXIT_WAIT = 2.0  # how long to wait for the exit code after a worker's pipe closed
_LOOP_ERROR_PAUSE = 0.1  # after an unexpected error in the supervisor loop
_FRESH_START_TIMEOUT = 120.0  # a fresh fork server importing the workers (torch, cv2...)


@dataclass
class _ForkServer:
    """The fork server process: a fork of this one (``copy``) or a new one (``fresh``)."""

    pid: int
    kind: str
    proc: subprocess.Popen[bytes] | None = None

    def wait(self) -> int | None:
        """Reap it; return its exit code (``None`` when it was reaped elsewhere)."""
        if self.proc is not None:
            return self.proc.wait()
        try:
            _, raw = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(raw)


def describe_exit(code: int | None) -> str:
    """Say in words how a process ended (``code`` < 0 is a signal, as in subprocess)."""
    if code is None:
        return "worker process ended (exit status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process was killed by {name}"
    return f"worker process exited with code {code}"


@dataclass
class _Handle:
    spec: WorkerSpec
    conn: Connection
    pid: int | None = None
    spawned: threading.Event = field(default_factory=threading.Event)
    spawn_error: str | None = None
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False
    cancel_at: float | None = None
    killed: bool = False
    exit_msg: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    eof_at: float | None = None
    exit_code: int | None = None
    code_known: bool = False
    code_at: float | None = None
    seq: int = 0


class LocalRuntime(WorkerRuntime):
    """Run each task as a local process in its own process group."""

    def __init__(
        self, config: SkaldConfig, registry: WorkerRegistry, listener: WorkerListener
    ) -> None:
        self._config = config
        self._registry = registry
        self._listener = listener
        self._handles: dict[str, _Handle] = {}
        self._by_pid: dict[int, _Handle] = {}
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[_Handle] = queue.SimpleQueue()
        self._ctrl: socket.socket | None = None
        self._zygote: _ForkServer | None = None
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the fork server, then the supervisor thread.

        Raises:
            ConfigError: ``FORK_SERVER=fresh`` and a worker class cannot be imported
                by name, or the fresh fork server could not import it.
        """
        if self._thread is not None:
            return
        self._ctrl, self._zygote = self._start_zygote()
        self._thread = threading.Thread(target=self._loop, name="skalds-supervisor", daemon=True)
        self._thread.start()

    @property
    def fork_server(self) -> tuple[int, str] | None:
        """The fork server's pid and kind (``fresh`` or ``copy``), once started."""
        zygote = self._zygote
        return (zygote.pid, zygote.kind) if zygote is not None else None

    def _start_zygote(self) -> tuple[socket.socket, _ForkServer]:
        """A fresh fork server when ``FORK_SERVER`` allows it and it starts, else a copy."""
        from skalds.runtime.zygote import worker_targets

        mode = self._config.fork_server
        if mode == "copy":
            return self._fork_zygote()
        targets, why = worker_targets(self._registry)
        if not why and not sys.executable:
            why = "sys.executable is unknown (an embedded interpreter)"
        if not why and getattr(sys, "frozen", False):
            why = "this is a frozen application (its executable runs the application)"
        failed = False
        if not why:
            try:
                return self._exec_zygote(targets)
            except SkaldsError as exc:
                why, failed = str(exc), True
        if mode == "fresh":
            raise ConfigError(
                f"FORK_SERVER=fresh, but {why}; "
                + ("see its error above" if failed else "move the class to a module of its own")
                + " or set FORK_SERVER=copy"
            )
        log = logger.warning if failed else logger.info
        log("the fork server is a copy of this process: %s", why)
        return self._fork_zygote()

    def _exec_zygote(self, targets: list[list[str]]) -> tuple[socket.socket, _ForkServer]:
        """Start a new interpreter as the fork server; wait until it imported the workers.

        Raises:
            SkaldsError: it could not import them, or ended or hung before it was ready.
        """
        import json

        from skalds.runtime.zygote import FRESH_BOOTSTRAP, SPEC_ENV

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = {
            "fd": child.fileno(),
            "path": [str(entry) for entry in sys.path],  # a user may append a Path
            "workers": targets,
            "grace": self._config.cancel_grace_seconds,
        }
        # The node's -X/-W/-O flags, as multiprocessing passes them (a private helper)
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        command = [sys.executable, *flags, "-c", FRESH_BOOTSTRAP]
        try:
            proc = subprocess.Popen(
                command, pass_fds=(child.fileno(),), env={**os.environ, SPEC_ENV: json.dumps(spec)}
            )
        except OSError as exc:
            parent.close()
            raise SkaldsError(f"the fresh fork server could not start: {exc}") from exc
        finally:
            child.close()
        try:
            parent.settimeout(_FRESH_START_TIMEOUT)
            data = parent.recv(MAX_CONTROL_PACKET)
            parent.settimeout(None)
        except OSError as exc:  # including the timeout
            data, problem = b"", f"no answer within {_FRESH_START_TIMEOUT:g} s ({exc})"
        else:
            problem = "it ended before it was ready"
        msg = decode(data) if data else {}
        if msg.get("t") == "ready":
            return parent, _ForkServer(proc.pid, "fresh", proc)
        parent.close()
        with contextlib.suppress(OSError):
            proc.kill()
        code = proc.wait()
        if msg.get("t") == "failed":
            problem = f"it could not import the workers: {msg.get('error')}"
        raise SkaldsError(f"the fresh fork server failed ({problem}; exit {code})")

    def _fork_zygote(self) -> tuple[socket.socket, _ForkServer]:
        from skalds.runtime.zygote import zygote_main

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with warnings.catch_warnings():
            # The fork server runs only our own single-threaded loop, never code that
            # could wait on a lock another thread of this process held at fork time.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the fork server
            try:
                parent.close()
                zygote_main(child, self._registry, self._config.cancel_grace_seconds)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(1)
        child.close()
        return parent, _ForkServer(pid, "copy")

    def _replace_zygote(self, sel: selectors.BaseSelector) -> None:
        """The fork server is gone (killed from outside?): say so and start another.

        Running workers are not affected (their pipes stay open); only their exit
        codes are no longer reported, so their outcome comes from their own last
        message or, failing that, from how their pipe closed.
        """
        old = self._zygote
        old_pid = old.pid if old is not None else None
        status = "unknown status"
        if old is not None and (code := old.wait()) is not None:
            status = describe_exit(code).replace("worker ", "")
        logger.error("the fork server (pid %s) is gone: %s; starting a new one", old_pid, status)
        assert self._ctrl is not None
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(self._ctrl)
        self._ctrl.close()
        for handle in self._snapshot():
            if handle.pid is not None:
                handle.code_known = True  # nobody will report their exit codes now
            else:
                handle.spawn_error = "the fork server died while starting the task"
                handle.spawned.set()
        try:
            self._ctrl, self._zygote = self._start_zygote()
        except ConfigError as exc:  # FORK_SERVER=fresh, and that worked before: go on
            logger.error("%s; this time the fork server is a copy of this process", exc)
            self._ctrl, self._zygote = self._fork_zygote()
        sel.register(self._ctrl, selectors.EVENT_READ, None)

    def close(self, grace: float = 5.0) -> None:
        """Cancel every worker, wait up to ``grace`` (+1 s) for them, stop the fork server."""
        for task_id in self.running():
            with contextlib.suppress(SkaldsError):
                self.cancel(task_id, grace)
        deadline = time.monotonic() + grace + 1.0
        while self._handles and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ctrl is not None:
            self._ctrl.close()  # the fork server sees EOF and exits
        if self._zygote is not None:
            self._zygote.wait()
            self._zygote = None

    # -- requests ------------------------------------------------------------------

    def spawn(self, spec: WorkerSpec) -> int:
        """Start ``spec``'s worker; return its pid once the fork server forked it."""
        if self._ctrl is None:
            raise SkaldsError("the worker runtime is not started")
        node_sock, worker_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handle = _Handle(spec, Connection(node_sock.detach()))
        with self._lock:
            if spec.task_id in self._handles:
                worker_sock.close()
                handle.conn.close()
                raise SkaldsError(f"task {spec.task_id!r} is already running on this node")
            self._handles[spec.task_id] = handle
        try:
            socket.send_fds(
                self._ctrl, [encode("spawn", task_id=spec.task_id)], [worker_sock.fileno()]
            )
        finally:
            worker_sock.close()
        handle.conn.send_bytes(encode("init", **self._init_fields(spec)))
        if not handle.spawned.wait(10) or handle.pid is None:
            with self._lock:
                self._handles.pop(spec.task_id, None)
            handle.conn.close()
            raise SkaldsError(f"could not start task {spec.task_id}: {handle.spawn_error}")
        self._pending.put(handle)
        self._wake()
        return handle.pid

    def _init_fields(self, spec: WorkerSpec) -> dict[str, Any]:
        cfg = self._config
        return {
            "task_id": spec.task_id,
            "class_name": spec.class_name,
            "attachments": spec.attachments,
            "dependencies": spec.extra.get("dependencies"),
            "skald_id": cfg.skald_id,
            "log_level": cfg.log_level,
            "log_file": spec.log_file,
            "log_rotation_mb": cfg.log_rotation_mb,
            "log_retention": cfg.log_retention,
            "heartbeat_interval": cfg.heartbeat_interval,
        }

    def send_update(self, task_id: str, attachments: dict[str, Any]) -> int:
        handle = self._get(task_id, need_pid=False)  # queued in the pipe until the worker reads
        with handle.send_lock:
            handle.seq += 1
            seq = handle.seq
            handle.conn.send_bytes(encode("update", seq=seq, attachments=attachments))
        return seq

    def set_paused(self, task_id: str, paused: bool) -> None:
        handle = self._get(task_id)
        assert handle.pid is not None
        self._signal_group(handle.pid, signal.SIGSTOP if paused else signal.SIGCONT)
        handle.paused = paused

    def cancel(self, task_id: str, grace: float) -> None:
        handle = self._get(task_id)
        assert handle.pid is not None
        if handle.cancel_at is None:
            handle.cancel_at = time.monotonic() + grace
            self._signal_group(handle.pid, signal.SIGTERM)
            if handle.paused:  # a stopped process only sees the TERM once continued
                self._signal_group(handle.pid, signal.SIGCONT)
            self._wake()

    def running(self) -> list[str]:
        with self._lock:
            return [tid for tid, h in self._handles.items() if h.eof_at is None]

    def pid_of(self, task_id: str) -> int | None:
        """Return the worker's pid (its process group id too), if it runs here."""
        handle = self._handles.get(task_id)
        return handle.pid if handle else None

    def _get(self, task_id: str, need_pid: bool = True) -> _Handle:
        handle = self._handles.get(task_id)
        if handle is not None and need_pid:
            handle.spawned.wait(10)  # a request right after spawn() waits for the fork
        if handle is None or handle.eof_at is not None or (need_pid and handle.pid is None):
            raise SkaldsError(f"task {task_id!r} is not running on this node")
        return handle

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the supervisor loop ---------------------------------------------------------

    def _loop(self) -> None:
        assert self._ctrl is not None
        self._sel = sel = selectors.DefaultSelector()
        sel.register(self._ctrl, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        failing = False
        while not self._stopping.is_set():
            try:
                self._serve_once(sel)
                failing = False
            except Exception:
                # This thread is every worker's supervisor: it must outlive any bug of
                # its own. Log it (once per streak) and go on after a short pause.
                if not failing:
                    logger.exception("worker runtime: the supervisor loop failed; going on")
                failing = True
                self._stopping.wait(_LOOP_ERROR_PAUSE)
        sel.close()

    def _serve_once(self, sel: selectors.BaseSelector) -> None:
        """Wait for the fork server, a worker pipe, a wake-up or a timer; handle it."""
        for key, _ in sel.select(timeout=self._next_timeout()):
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif key.data is None:
                if not self._on_ctrl() and not self._stopping.is_set():
                    self._replace_zygote(sel)
            else:
                self._on_worker(key.data)
        while not self._pending.empty():
            handle = self._pending.get()
            if handle.eof_at is None:
                sel.register(handle.conn, selectors.EVENT_READ, handle)
        self._on_timers()

    def _snapshot(self) -> list[_Handle]:
        """The handles now. Lanes add to ``_handles`` (``spawn``) while this thread reads:
        iterating the dict itself could meet a change and raise."""
        with self._lock:
            return list(self._handles.values())

    def _next_timeout(self) -> float:
        now = time.monotonic()
        handles = self._snapshot()
        deadlines = [h.cancel_at for h in handles if h.cancel_at and not h.killed]
        deadlines += [h.eof_at + _EXIT_WAIT for h in handles if h.eof_at]
        deadlines += [h.code_at + _EXIT_WAIT for h in handles if h.code_at]
        return max(0.0, min(deadlines) - now) if deadlines else 1.0

    def _on_ctrl(self) -> bool:
        """Handle one fork-server message; return False when the fork server is gone."""
        assert self._ctrl is not None
        try:
            data = self._ctrl.recv(MAX_CONTROL_PACKET)
        except OSError:
            data = b""
        if not data:
            return False
        msg = decode(data)
        handle = self._handles.get(msg.get("task_id") or "")
        if msg["t"] == "spawned" and handle is not None:
            handle.pid = msg["pid"]
            self._by_pid[msg["pid"]] = handle
            handle.spawned.set()
            self._listener.worker_started(handle.spec.task_id, msg["pid"])
        elif msg["t"] == "spawn-failed" and handle is not None:
            handle.spawn_error = msg.get("error")
            handle.spawned.set()
        elif msg["t"] == "exited":
            found = self._by_pid.get(msg["pid"])
            if found is not None:
                found.exit_code = msg["code"]
                found.code_known = True
                found.code_at = time.monotonic()
                self._maybe_finish(found)
        return True

    def _on_worker(self, handle: _Handle) -> None:
        try:
            while handle.conn.poll(0):
                self._on_message(handle, decode(handle.conn.recv_bytes()))
        except (EOFError, OSError, ValueError):
            self._close_pipe(handle)
            self._maybe_finish(handle)

    def _close_pipe(self, handle: _Handle) -> None:
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(handle.conn)
        handle.conn.close()
        handle.eof_at = time.monotonic()

    def _on_message(self, handle: _Handle, msg: dict[str, Any]) -> None:
        task_id = handle.spec.task_id
        kind = msg["t"]
        if kind == "hb":
            self._listener.worker_heartbeat(task_id, int(msg["v"]))
        elif kind == "updated":
            self._listener.worker_update_applied(task_id, int(msg["seq"]), msg.get("error"))
        elif kind == "failure":
            handle.failure = msg
        elif kind == "exit":
            handle.exit_msg = msg

    def _on_timers(self) -> None:
        now = time.monotonic()
        for handle in self._snapshot():
            if handle.cancel_at and not handle.killed and now >= handle.cancel_at:
                if handle.pid is not None and handle.eof_at is None:
                    logger.warning(
                        "task %s did not stop within the grace period; SIGKILL",
                        handle.spec.task_id,
                    )
                    self._signal_group(handle.pid, signal.SIGKILL)
                handle.killed = True
            if handle.eof_at and now >= handle.eof_at + _EXIT_WAIT and not handle.code_known:
                handle.code_known = True  # the fork server did not answer: go without
                self._maybe_finish(handle)
            if handle.code_at and handle.eof_at is None and now >= handle.code_at + _EXIT_WAIT:
                # The process is gone but something outside its group holds the pipe.
                self._close_pipe(handle)
                self._maybe_finish(handle)

    def _maybe_finish(self, handle: _Handle) -> None:
        if handle.eof_at is None or not handle.code_known:
            return
        with self._lock:
            if self._handles.get(handle.spec.task_id) is not handle:
                return
            del self._handles[handle.spec.task_id]
            if handle.pid is not None:
                self._by_pid.pop(handle.pid, None)
        self._listener.worker_exited(handle.spec.task_id, self._outcome(handle))

    @staticmethod
    def _outcome(handle: _Handle) -> WorkerOutcome:
        msg = handle.exit_msg
        code = handle.exit_code
        if msg is not None:
            status = TaskLifecycleStatus(msg["status"])
            if status is TaskLifecycleStatus.FAILED:
                return WorkerOutcome(status, code, msg.get("error"), msg.get("tb"))
            return WorkerOutcome(status, code)
        if handle.cancel_at is not None:
            return WorkerOutcome(TaskLifecycleStatus.CANCELLED, code)
        reason = describe_exit(code)
        if handle.failure:
            reason = f"{handle.failure.get('error')} ({reason})"
        tb = handle.failure.get("tb") if handle.failure else None
        return WorkerOutcome(TaskLifecycleStatus.FAILED, code, reason, tb)
