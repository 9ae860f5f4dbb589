"""Local worker runtime: task processes forked by a fork server, watched by one thread.

The supervisor thread waits (epoll) on every worker pipe and on the fork server's
control socket, so a worker's exit is seen the moment its pipe closes, not at the
next poll, and cancel deadlines (SIGKILL after the grace period) are timers of the
same loop. Messages to a worker go through its :class:`~skalds.runtime.pipe.WorkerPipe`
and never block the caller: what the socket does not take at once, this loop sends
as the worker reads. An update to a paused worker is held (the latest one) and
sent when it resumes.

No worker outlives its node: the node holds its id's lock on this host
(:mod:`skalds.runtime.host_lock`), which stops leftovers of a previous run before the
fork server starts, and a worker whose node pipe closes cancels itself
(:mod:`skalds.runtime.child`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError, SkaldsError
from skalds.model.task import TaskLifecycleStatus
from skalds.ports.runtime import WorkerListener, WorkerOutcome, WorkerRuntime, WorkerSpec
from skalds.runtime.fork_server import ForkServer, describe_exit, fork_copy, start_fork_server
from skalds.runtime.host_lock import NodeLock, default_run_dir
from skalds.runtime.pipe import PipeClosed, WorkerPipe
from skalds.runtime.protocol import MAX_CONTROL_PACKET, decode, encode
from skalds.utils.logging import logger
from skalds.worker.registry import WorkerRegistry

__all__ = ["LocalRuntime", "describe_exit"]

_EXIT_WAIT = 2.0  # how long to wait for the exit code after a worker's pipe closed
_LOOP_ERROR_PAUSE = 0.1  # after an unexpected error in the supervisor loop
_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE


@dataclass
class _Handle:
    spec: WorkerSpec
    pipe: WorkerPipe
    pid: int | None = None
    spawned: threading.Event = field(default_factory=threading.Event)
    spawn_error: str | None = None
    control: threading.Lock = field(default_factory=threading.Lock)
    """Held while numbering an update and while pausing or resuming."""
    paused: bool = False
    held: bytes | None = None
    """The latest update sent while paused: it goes out on resume."""
    mask: int = 0
    """What the loop waits for on the pipe (0: not registered)."""
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
        self._to_flush: queue.SimpleQueue[_Handle] = queue.SimpleQueue()
        self._server: ForkServer | None = None
        self._node_lock: NodeLock | None = None
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Take the node's lock on this host, start the fork server, then the loop.

        Raises:
            ConfigError: a node with this id already runs on this host; or
                ``FORK_SERVER=fresh`` and a worker class cannot be imported by name,
                or the fresh fork server could not import it.
            SkaldsError: leftovers of this node's previous run could not be stopped.
        """
        if self._thread is not None:
            return
        cfg = self._config
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir()
        self._node_lock = NodeLock.acquire(run_dir, cfg.skald_id, cfg.cancel_grace_seconds)
        try:
            self._server = start_fork_server(
                cfg, self._registry, inherit=(self._node_lock.fileno(),)
            )
        except BaseException:
            self._node_lock.release()
            raise
        self._thread = threading.Thread(target=self._loop, name="skalds-supervisor", daemon=True)
        self._thread.start()

    @property
    def fork_server(self) -> tuple[int, str] | None:
        """The fork server's pid and kind (``fresh`` or ``copy``), once started."""
        server = self._server
        return (server.pid, server.kind) if server is not None else None

    def _replace_fork_server(self, sel: selectors.BaseSelector) -> None:
        """The fork server is gone (killed from outside?): say so and start another.

        Running workers are not affected (their pipes stay open); only their exit
        codes are no longer reported, so their outcome comes from their own last
        message or, failing that, from how their pipe closed. A paused worker was
        continued by its parent's death (see the worker side): it is stopped again.
        """
        old = self._server
        assert old is not None
        status = "unknown status"
        if (code := old.wait()) is not None:
            status = describe_exit(code).replace("worker ", "")
        logger.error("the fork server (pid %s) is gone: %s; starting a new one", old.pid, status)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(old.ctrl)
        old.ctrl.close()
        for handle in self._snapshot():
            if handle.pid is not None:
                handle.code_known = True  # nobody will report their exit codes now
                with handle.control:
                    if handle.paused:
                        self._signal_group(handle.pid, signal.SIGSTOP)
            else:
                handle.spawn_error = "the fork server died while starting the task"
                handle.spawned.set()
        assert self._node_lock is not None
        try:
            self._server = start_fork_server(
                self._config, self._registry, inherit=(self._node_lock.fileno(),)
            )
        except ConfigError as exc:  # FORK_SERVER=fresh, and that worked before: go on
            logger.error("%s; this time the fork server is a copy of this process", exc)
            self._server = fork_copy(self._config, self._registry)
        sel.register(self._server.ctrl, _READ, None)

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
        if self._server is not None:
            self._server.ctrl.close()  # the fork server sees EOF and exits
            self._server.wait()
            self._server = None
        if self._node_lock is not None:
            self._node_lock.release()
            self._node_lock = None

    # -- requests ------------------------------------------------------------------

    def spawn(self, spec: WorkerSpec) -> int:
        """Start ``spec``'s worker; return its pid once the fork server forked it."""
        server = self._server
        if server is None:
            raise SkaldsError("the worker runtime is not started")
        node_sock, worker_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handle = _Handle(spec, WorkerPipe(node_sock))
        with self._lock:
            if spec.task_id in self._handles:
                worker_sock.close()
                handle.pipe.close()
                raise SkaldsError(f"task {spec.task_id!r} is already running on this node")
            self._handles[spec.task_id] = handle
        try:
            socket.send_fds(
                server.ctrl, [encode("spawn", task_id=spec.task_id)], [worker_sock.fileno()]
            )
        except OSError as exc:
            handle.spawn_error = f"the fork server did not take the request ({exc})"
            handle.spawned.set()
        finally:
            worker_sock.close()
        with contextlib.suppress(PipeClosed):
            handle.pipe.send(encode("init", **self._init_fields(spec)))
        if not handle.spawned.wait(10) or handle.pid is None:
            with self._lock:
                self._handles.pop(spec.task_id, None)
            handle.pipe.close()
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
            "attachments_version": spec.extra.get("attachments_version", 0),
            "incarnation": spec.extra.get("incarnation", 0),
            "dependencies": spec.extra.get("dependencies"),
            "skald_id": cfg.skald_id,
            "log_level": cfg.log_level,
            "log_file": spec.log_file,
            "log_rotation_mb": cfg.log_rotation_mb,
            "log_retention": cfg.log_retention,
            "heartbeat_interval": cfg.heartbeat_interval,
            "grace": cfg.cancel_grace_seconds,
        }

    def send_update(self, task_id: str, attachments: dict[str, Any], version: int = 0) -> int:
        """Send new attachments (``version`` of them); never blocks.

        A paused worker gets them when it resumes (only the latest, if several came);
        an update not yet on its way is replaced by a newer one.
        """
        handle = self._get(task_id, need_pid=False)
        with handle.control:
            handle.seq += 1
            seq = handle.seq
            payload = encode("update", seq=seq, version=version, attachments=attachments)
            if handle.paused:
                handle.held = payload
                return seq
        self._send(handle, payload)
        return seq

    def set_paused(self, task_id: str, paused: bool) -> None:
        handle = self._get(task_id)
        assert handle.pid is not None
        with handle.control:
            self._signal_group(handle.pid, signal.SIGSTOP if paused else signal.SIGCONT)
            handle.paused = paused
            held, handle.held = (None, handle.held) if paused else (handle.held, None)
        if held is not None:
            self._send(handle, held)

    def _send(self, handle: _Handle, payload: bytes) -> None:
        """Queue an update on the worker's pipe; the loop sends what waits."""
        try:
            if handle.pipe.send(payload, replaceable=True):
                return
        except PipeClosed:
            return  # the worker is gone: its exit is reported by the loop
        self._to_flush.put(handle)
        self._wake()

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

    def queued_bytes(self, task_id: str) -> int:
        """Bytes of messages waiting for the worker to read them (0 when none or gone)."""
        handle = self._handles.get(task_id)
        return handle.pipe.queued_bytes if handle else 0

    def _get(self, task_id: str, need_pid: bool = True) -> _Handle:
        handle = self._handles.get(task_id)
        if handle is not None and need_pid:
            handle.spawned.wait(10)  # a request right after spawn() waits for the fork
        if handle is None or handle.eof_at is not None or (need_pid and handle.pid is None):
            raise SkaldsError(f"task {task_id!r} is not running on this node")
        return handle

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        """Signal a task's process group (its pid is the group's id)."""
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            # Forked a moment ago, it has not made its own group yet (setsid): it is
            # alone then, and a pause or a cancel must not be lost.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pgid, sig)
        except PermissionError:
            pass

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the supervisor loop ---------------------------------------------------------

    def _loop(self) -> None:
        assert self._server is not None
        self._sel = sel = selectors.DefaultSelector()
        sel.register(self._server.ctrl, _READ, None)
        sel.register(self._wake_r, _READ, "wake")
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
        for key, events in sel.select(timeout=self._next_timeout()):
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif key.data is None:
                if not self._on_ctrl() and not self._stopping.is_set():
                    self._replace_fork_server(sel)
            else:
                if events & selectors.EVENT_WRITE:
                    self._flush(key.data)
                if events & selectors.EVENT_READ:
                    self._on_worker(key.data)
        while not self._pending.empty():
            handle = self._pending.get()
            if handle.eof_at is None:
                handle.mask = _READ
                sel.register(handle.pipe, _READ, handle)
                self._flush(handle)
        while not self._to_flush.empty():
            self._flush(self._to_flush.get())
        self._on_timers()

    def _flush(self, handle: _Handle) -> None:
        """Send what waits for ``handle``'s worker; wait for room if some is left."""
        if handle.mask == 0 or handle.eof_at is not None:
            return  # not registered yet (spawning) or gone: nothing to wait for
        try:
            done = handle.pipe.flush()
        except PipeClosed:
            done = True  # the read side sees the end and reports the exit
        want = _READ if done else _READ_WRITE
        if want != handle.mask and self._sel is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.modify(handle.pipe, want, handle)
                handle.mask = want

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
        assert self._server is not None
        try:
            data = self._server.ctrl.recv(MAX_CONTROL_PACKET)
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
            for data in handle.pipe.receive():
                self._on_message(handle, decode(data))
        except (PipeClosed, ValueError):
            self._close_pipe(handle)
            self._maybe_finish(handle)

    def _close_pipe(self, handle: _Handle) -> None:
        if self._sel is not None and handle.mask:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(handle.pipe)
        handle.mask = 0
        handle.pipe.close()
        handle.eof_at = time.monotonic()

    def _on_message(self, handle: _Handle, msg: dict[str, Any]) -> None:
        task_id = handle.spec.task_id
        kind = msg["t"]
        if kind == "hb":
            self._listener.worker_heartbeat(task_id, int(msg["v"]))
        elif kind == "updated":
            version = msg.get("version")
            self._listener.worker_update_applied(
                task_id,
                int(msg["seq"]),
                msg.get("error"),
                version=version if isinstance(version, int) else None,
            )
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
