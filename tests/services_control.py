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


def stop_service(name: str, timeout: float = 30.0) -> None:
    """SIGTERM the service (pid file of scripts/services) and wait until it is gone."""
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
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not restart {name}: {result.stdout}{result.stderr}")
    assert time.monotonic() - started < 180
