"""Stop and restart the real test services (for outage tests), keeping their data."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = Path(os.environ.get("SKALDS_SERVICES_DIR", "/tmp/skalds-services"))


def restart_env(name: str) -> dict[str, str]:
    """The environment that starts ``name`` again as it ran (FerretDB: with or without auth).

    ``scripts/services up ferretdb`` starts FerretDB as ``SKALDS_FERRETDB_AUTH`` says
    now; an outage test run under another setting than the one FerretDB was started
    with would otherwise switch the shared server's mode for every later test (which
    then fail to authenticate, far from the cause).

    Raises:
        RuntimeError: FerretDB ran with authentication and the environment does not
            give that user's password.
    """
    env = dict(os.environ)
    mode_file = SERVICES_DIR / "run" / f"{name}.mode"
    if name != "ferretdb" or not mode_file.exists():
        return env
    mode = mode_file.read_text().split()[0]  # "noauth" or "auth:<user>", then its options
    if mode == "noauth":
        env.pop("SKALDS_FERRETDB_AUTH", None)
        return env
    user = mode.removeprefix("auth:")
    if not env.get("SKALDS_FERRETDB_AUTH", "").startswith(f"{user}:"):
        raise RuntimeError(
            f"FerretDB runs with authentication (user {user!r}); set "
            f"SKALDS_FERRETDB_AUTH={user}:<password> to restart it as it runs "
            "(scripts/test sets root:root)"
        )
    return env


def stop_service(name: str, timeout: float = 30.0) -> None:
    """SIGTERM the service (pid file of scripts/services) and wait until it is gone.

    Refuses (see :func:`restart_env`) to stop one it could not start again as it runs.
    """
    restart_env(name)
    pid = int((SERVICES_DIR / "run" / f"{name}.pid").read_text().strip())
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        psutil.Process(pid).kill()


def start_service(name: str) -> None:
    """Start the service again with its data (``scripts/services up NAME``)."""
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up", name],
        capture_output=True,
        text=True,
        timeout=180,
        env=restart_env(name),
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not restart {name}: {result.stdout}{result.stderr}")
    assert time.monotonic() - started < 180
