"""One run of a node id per host, and nothing left of the previous one when it starts.

A node holds an exclusive ``flock`` on ``<run_dir>/<skald id>.lock`` while it runs.
Its fork server and every task process inherit the open file (a fork copies it), so
the lock stays taken as long as *any* process of that run lives: after a node is
killed together with its fork server (``kill -9 -- -<pgid>``, an OOM kill, a
container stop), worker processes that have not ended yet still hold it.

A node starting under that id finds the lock taken and looks at who holds it (the
processes that have the file open, from ``/proc``):

* the node process recorded in the file, alive: the id is in use here, and the
  start is refused with that pid named;
* anything else: leftovers of the previous run. They are stopped as a cancel stops
  a task (SIGCONT and SIGTERM to each task's process group, SIGKILL after the grace
  period), so the store's tasks restart here without a second copy running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from skalds.errors import ConfigError, SkaldsError
from skalds.utils.logging import logger

__all__ = ["NodeLock", "default_run_dir"]

_SETTLE_SECONDS = 5.0
"""How long to wait after SIGKILL for the leftovers to be gone."""


def default_run_dir() -> Path:
    """``$XDG_RUNTIME_DIR/skalds``, else ``<temp dir>/skalds-<uid>``: per user, per host."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        return Path(base) / "skalds"
    return Path(tempfile.gettempdir()) / f"skalds-{os.getuid()}"


def _holders(path: Path) -> list[int]:
    """Pids of the processes (ours to see) that have ``path`` open."""
    target = str(path)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fd_dir = f"/proc/{name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    found.append(int(name))
                    break
            except OSError:
                continue
    return found


def _signal(pid: int, sig: int) -> None:
    """Signal a task's whole process group if ``pid`` leads one, else the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


class NodeLock:
    """The lock of one node id on this host; :meth:`acquire` it, :meth:`release` at the end."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def fileno(self) -> int:
        """The lock file's descriptor, for a fork server started by ``exec`` to inherit."""
        if self._fd is None:
            raise SkaldsError("the node lock is released")
        return self._fd

    @classmethod
    def acquire(cls, run_dir: Path, skald_id: str, grace: float) -> NodeLock:
        """Take the lock of ``skald_id``, stopping leftovers of its previous run first.

        Args:
            run_dir: where the lock files are (created, mode 0700, when missing).
            skald_id: the node id.
            grace: seconds leftover tasks get for their release handlers.

        Raises:
            ConfigError: a node with this id runs on this host, or ``run_dir`` is unusable.
            SkaldsError: leftovers of a previous run could not be stopped.
        """
        try:
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use the run directory {run_dir}: {exc}") from exc
        path = (run_dir / f"{skald_id}.lock").resolve()
        deadline: float | None = None
        stopped: set[int] = set()
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ConfigError(f"cannot lock {path}: {exc}") from exc
                if deadline is None:
                    deadline = time.monotonic() + grace + _SETTLE_SECONDS
                cls._stop_leftovers(path, skald_id, stopped, deadline)
                time.sleep(0.05)
                continue
            if cls._same_file(path, fd):
                lock = cls(path, fd)
                lock._claim()
                return lock
            os.close(fd)  # unlinked by its previous owner as we opened it: try again

    @staticmethod
    def _same_file(path: Path, fd: int) -> bool:
        try:
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _stop_leftovers(path: Path, skald_id: str, stopped: set[int], deadline: float) -> None:
        """Refuse when the id's node lives; else stop its run's leftover processes."""
        holding = _holders(path)
        owner = _recorded_owner(path)
        if owner is not None and owner in holding:
            raise ConfigError(
                f"skald id {skald_id!r} is already running on this host (pid {owner}); "
                "stop that node or give this one another SKALD_ID"
            )
        holders = [pid for pid in holding if pid != os.getpid()]
        fresh = [pid for pid in holders if pid not in stopped]
        if fresh:
            logger.warning(
                "skald %s: %d process(es) of its previous run still live on this host "
                "(pids %s); stopping them before it starts",
                skald_id,
                len(fresh),
                ", ".join(map(str, fresh)),
            )
            for pid in fresh:
                _signal(pid, signal.SIGCONT)
                _signal(pid, signal.SIGTERM)
            stopped.update(fresh)
        now = time.monotonic()
        if now >= deadline - _SETTLE_SECONDS:
            for pid in holders:
                _signal(pid, signal.SIGKILL)
        if now >= deadline:
            raise SkaldsError(
                f"skald {skald_id}: processes of its previous run did not stop "
                f"(pids {', '.join(map(str, holders)) or 'unknown'}); {path} is still locked"
            )

    def _claim(self) -> None:
        fd = self.fileno()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid()}).encode(), 0)

    def close_descriptor(self) -> None:
        """Close this process's descriptor only (processes that inherited it keep it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Remove the lock file and close it: the id is free on this host."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if self._same_file(self.path, self._fd):
                self.path.unlink()
        self.close_descriptor()


def _recorded_owner(path: Path) -> int | None:
    """The pid of the node that took the lock, as written in the file."""
    try:
        pid = json.loads(path.read_text() or "{}").get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None
