"""Starting the fork server (the node's side): a fresh interpreter, or a copy of the node.

The fork server itself (what runs in it) is :mod:`skalds.runtime.zygote`; this module
starts one and says which kind it is. ``FORK_SERVER=fresh`` starts a new interpreter
that imports only the worker classes, ``copy`` forks the node, ``auto`` tries fresh
and falls back to a copy (with the reason logged) when a class cannot be imported by
name. Both inherit the node's lock file (:mod:`skalds.runtime.host_lock`), and so do
the task processes they fork.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass

from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError, SkaldsError
from skalds.runtime.protocol import MAX_CONTROL_PACKET, decode
from skalds.utils.logging import logger
from skalds.worker.registry import WorkerRegistry

__all__ = ["ForkServer", "describe_exit", "start_fork_server"]

_FRESH_START_TIMEOUT = 120.0  # a fresh fork server importing the workers (torch, cv2...)


@dataclass
class ForkServer:
    """The fork server process: a fork of this one (``copy``) or a new one (``fresh``)."""

    pid: int
    kind: str
    ctrl: socket.socket
    """The control socket: spawn requests out, spawn and exit reports in."""
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
    import signal

    if code is None:
        return "worker process ended (exit status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process was killed by {name}"
    return f"worker process exited with code {code}"


def start_fork_server(
    config: SkaldConfig, registry: WorkerRegistry, inherit: tuple[int, ...] = ()
) -> ForkServer:
    """A fresh fork server when ``config.fork_server`` allows it and it starts, else a copy.

    Args:
        config: the node's config (``fork_server``, ``cancel_grace_seconds``).
        registry: the worker classes it must be able to run.
        inherit: descriptors a fresh fork server must keep (a copy keeps them all).

    Raises:
        ConfigError: ``FORK_SERVER=fresh`` and a worker class cannot be imported by
            name, or the fresh fork server could not import it.
    """
    from skalds.runtime.zygote import worker_targets

    mode = config.fork_server
    if mode == "copy":
        return fork_copy(config, registry)
    targets, why = worker_targets(registry)
    if not why and not sys.executable:
        why = "sys.executable is unknown (an embedded interpreter)"
    if not why and getattr(sys, "frozen", False):
        why = "this is a frozen application (its executable runs the application)"
    failed = False
    if not why:
        try:
            return _exec_fresh(config, targets, inherit)
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
    return fork_copy(config, registry)


def _exec_fresh(
    config: SkaldConfig, targets: list[list[str]], inherit: tuple[int, ...]
) -> ForkServer:
    """Start a new interpreter as the fork server; wait until it imported the workers.

    Raises:
        SkaldsError: it could not import them, or ended or hung before it was ready.
    """
    from skalds.runtime.zygote import FRESH_BOOTSTRAP, SPEC_ENV

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    spec = {
        "fd": child.fileno(),
        "path": [str(entry) for entry in sys.path],  # a user may append a Path
        "workers": targets,
        "grace": config.cancel_grace_seconds,
    }
    # The node's -X/-W/-O flags, as multiprocessing passes them (a private helper)
    flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
    command = [sys.executable, *flags, "-c", FRESH_BOOTSTRAP]
    try:
        proc = subprocess.Popen(
            command,
            pass_fds=(child.fileno(), *inherit),
            env={**os.environ, SPEC_ENV: json.dumps(spec)},
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
        return ForkServer(proc.pid, "fresh", parent, proc)
    parent.close()
    with contextlib.suppress(OSError):
        proc.kill()
    code = proc.wait()
    if msg.get("t") == "failed":
        problem = f"it could not import the workers: {msg.get('error')}"
    raise SkaldsError(f"the fresh fork server failed ({problem}; exit {code})")


def fork_copy(config: SkaldConfig, registry: WorkerRegistry) -> ForkServer:
    """Fork this process as the fork server (it keeps every descriptor but sockets)."""
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
            zygote_main(child, registry, config.cancel_grace_seconds)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(1)
    child.close()
    return ForkServer(pid, "copy", parent)
