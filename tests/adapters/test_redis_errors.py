"""An unusable Redis is reported quickly, in one line naming the address, never the password."""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailableError
from skalds_redis import RedisCache, RedisConfig, RedisProxy
from skalds_redis.plugin import skalds_make_cache
from tests.backends.redis import REDIS_URL, connect_cache


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_reported(exc: pytest.ExceptionInfo[BackendUnavailableError], address: str) -> None:
    message = str(exc.value)
    assert address in message
    assert "\n" not in message


@pytest.fixture
def acl_user() -> Iterator[tuple[str, str]]:
    """A throw-away ACL user with a password on the test Redis (deleted afterwards)."""
    admin = connect_cache("Redis", REDIS_URL)
    name, password = f"skalds-test-{uuid.uuid4().hex[:8]}", secrets.token_hex(8)
    admin.client.acl_setuser(
        name, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    try:
        yield name, password
    finally:
        admin.client.acl_deluser(name)
        admin.close()


def test_a_closed_port_raises_at_once_naming_the_address():
    port = free_port()
    cache = RedisCache.from_url(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    for call in (lambda: cache.get("k"), lambda: cache.set("k", "v"), cache.detect_field_ttl):
        with pytest.raises(BackendUnavailableError, match="unreachable") as exc:
            call()
        assert_reported(exc, f"127.0.0.1:{port}")
    assert cache.ping() is False
    assert time.monotonic() - started < 2.0


def test_a_server_that_never_answers_times_out_instead_of_hanging():
    with socket.socket() as silent:  # accepts connections (kernel backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        # Timeouts can be given in the URL, as redis-py reads them.
        cache = RedisCache.from_url(f"redis://127.0.0.1:{port}/0?socket_timeout=0.3")
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as exc:
            cache.get("k")
        assert_reported(exc, f"127.0.0.1:{port}")
        assert time.monotonic() - started < 3.0
        cache.close()


def test_a_wrong_password_is_rejected_without_showing_it(acl_user):
    name, password = acl_user
    wrong = "not-" + password
    cache = RedisCache.from_url(f"redis://{name}:{wrong}@127.0.0.1:6379/0")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="rejected the credentials") as exc:
        cache.set("k", "v")
    assert_reported(exc, "127.0.0.1:6379")
    assert wrong not in str(exc.value) and wrong not in repr(cache)
    assert time.monotonic() - started < 2.0


def test_the_right_acl_user_and_password_work(acl_user):
    name, password = acl_user
    cache = RedisCache.from_url(f"redis://{name}:{password}@127.0.0.1:6379/0")
    k = f"test:{uuid.uuid4().hex[:10]}:acl"
    cache.set(k, "v", ttl=5)
    assert cache.get(k) == "v"
    assert cache.client.acl_whoami() == name
    cache.close()


def test_the_config_supplies_credentials_a_url_leaves_out(acl_user):
    name, password = acl_user
    good = SkaldConfig(redis_username=name, redis_password=password)
    bad = SkaldConfig(redis_username=name, redis_password="nope")
    cache = skalds_make_cache(url="redis://127.0.0.1:6379/0", config=good)
    assert cache is not None and cache.ping() is True
    assert cache.client.acl_whoami() == name
    cache.close()
    refused = skalds_make_cache(url="redis://127.0.0.1:6379/0", config=bad)
    assert refused is not None and refused.ping() is False


def test_the_seed_proxy_reports_a_wrong_password_too(acl_user):
    name, _ = acl_user
    proxy = RedisProxy(RedisConfig(host="127.0.0.1", username=name, password="wrong-pw"))
    with pytest.raises(BackendUnavailableError) as exc:
        proxy.get_message("k")
    assert_reported(exc, "127.0.0.1:6379")
    assert "wrong-pw" not in str(exc.value) + repr(proxy) + repr(proxy.config)


def test_tls_to_a_plain_server_fails_cleanly_naming_the_tls_address():
    connect_cache("Redis", REDIS_URL).close()
    cache = RedisCache.from_url(
        "rediss://127.0.0.1:6379/0", socket_timeout=0.5, socket_connect_timeout=0.5
    )
    assert cache.address == "rediss://127.0.0.1:6379/0"
    with pytest.raises(BackendUnavailableError) as exc:
        cache.get("k")
    assert_reported(exc, "rediss://127.0.0.1:6379")
