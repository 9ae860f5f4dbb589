"""A RedisCache in use survives a Redis restart: errors during the outage, works again after.

Stops the Redis of ``scripts/services`` (127.0.0.1:6379, this adapter's own service)
and starts it again exactly as ``scripts/services up redis`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from skalds.errors import BackendUnavailableError
from skalds.ports import HashSet, ListSet, Set
from skalds_redis import RedisCache
from tests.backends.redis import REDIS_URL, connect_cache
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = Path(os.environ.get("SKALDS_SERVICES_DIR", "/tmp/skalds-services"))
PID_FILE = SERVICES_DIR / "run" / "redis.pid"

pytestmark = pytest.mark.slow


def stop_redis() -> None:
    """SIGTERM the service's redis-server (no persistence: it exits at once) and wait."""
    proc = psutil.Process(int(PID_FILE.read_text().strip()))
    assert "redis-server" in proc.name()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start_redis() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up", "redis"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"scripts/services up redis failed: {result.stdout}{result.stderr}"
    )


@pytest.fixture
def cache() -> Iterator[RedisCache]:
    require_service(
        "Redis of scripts/services",
        REDIS_URL == "redis://127.0.0.1:6379/0" and PID_FILE.exists(),
        str(PID_FILE),
    )
    cache = connect_cache("Redis", REDIS_URL)
    try:
        yield cache
    finally:
        cache.close()
        if not cache.ping():  # never leave the shared service down
            start_redis()


def test_the_same_cache_raises_during_an_outage_and_works_again_after_a_restart(cache):
    k, h = f"test:{uuid.uuid4().hex[:10]}:v", f"test:{uuid.uuid4().hex[:10]}:h"
    cache.apply([Set(k, "before", ttl=30), HashSet(h, {"node": "1"}, ttl=30)])
    assert cache.get(k) == "before"

    stop_redis()

    started = time.monotonic()
    for call in (
        lambda: cache.get(k),
        lambda: cache.hash_get_all(h),
        lambda: cache.list_get(k),
        lambda: cache.apply([Set(k, "during", ttl=30), ListSet(k + ":l", ["a"])]),
    ):
        with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:6379") as exc:
            call()
        assert "\n" not in str(exc.value)
    assert cache.ping() is False
    assert time.monotonic() - started < 3.0

    start_redis()

    # Same instance, not rebuilt: its pooled connections were dead and are replaced.
    assert cache.ping() is True
    cache.apply([Set(k, "after", ttl=30), HashSet(h, {"node": "2"}, ttl=0.3)])
    assert cache.get(k) == "after"
    assert cache.hash_get_all(h) == {"node": "2"}
    time.sleep(0.5)
    assert cache.hash_get_all(h) == {}  # per-field expiry still works after the restart
