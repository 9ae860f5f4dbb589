"""The seed's ``skalds.proxy.redis`` API (RedisConfig, RedisProxy) on Redis 7.0 and Valkey 9."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

import skalds_redis
import skalds_redis.proxy
from skalds.ports import HashSet
from skalds_redis import RedisConfig, RedisProxy
from tests.backends.redis import REDIS_URL, VALKEY_URL, connect_cache


def key(name: str) -> str:
    return f"test:{uuid.uuid4().hex[:10]}:{name}"


@pytest.fixture(params=[("Redis", REDIS_URL), ("Valkey", VALKEY_URL)], ids=["redis", "valkey"])
def proxy(request: pytest.FixtureRequest) -> Iterator[RedisProxy]:
    name, url = request.param
    connect_cache(name, url).close()  # skips (fails under CI) when the server is down
    parts = urlsplit(url)
    with RedisProxy(RedisConfig(host=parts.hostname, port=parts.port)) as proxy:
        yield proxy


# -- the seed import path --------------------------------------------------------------


def test_the_seed_import_path_re_exports_the_adapters_classes():
    from skalds.proxy.redis import RedisConfig as SeedConfig
    from skalds.proxy.redis import RedisProxy as SeedProxy

    assert SeedConfig is RedisConfig and SeedProxy is RedisProxy


def test_the_packages_export_exactly_these_names():
    assert sorted(skalds_redis.__all__) == ["RedisCache", "RedisConfig", "RedisProxy"]
    assert sorted(skalds_redis.proxy.__all__) == ["RedisConfig", "RedisProxy"]


def test_the_config_has_the_seed_defaults_and_hides_the_password():
    config = RedisConfig()
    assert (config.host, config.port, config.password, config.db, config.username) == (
        "localhost",
        6379,
        None,
        0,
        None,
    )
    secret = RedisConfig(host="cache.internal", port=6380, password="s3cret", db=2, ssl=True)
    assert "s3cret" not in repr(secret)
    assert secret.url() == "rediss://cache.internal:6380/2"
    assert RedisConfig(host="::1").url() == "redis://[::1]:6379/0"


def test_the_proxy_connects_lazily():
    proxy = RedisProxy(RedisConfig(host="127.0.0.1", port=1))  # nothing listens there
    assert proxy.ping() is False


# -- the methods -------------------------------------------------------------------------


def test_messages_are_set_read_and_expire(proxy):
    k = key("msg")
    assert proxy.get_message(k) is None
    proxy.set_message(k, "hello")
    assert proxy.get_message(k) == "hello"
    proxy.set_message(k, 42, ttl=0.3)
    assert proxy.get_message(k) == "42"
    time.sleep(0.5)
    assert proxy.get_message(k) is None


def test_a_ttl_of_zero_keeps_the_value_as_in_the_seed(proxy):
    k = key("msg")
    proxy.set_message(k, "forever", ttl=0)
    assert proxy.get_message(k) == "forever"
    assert proxy.cache.client.pttl(k) == -1


def test_hash_fields_are_read_one_by_one_or_all_and_expire_on_their_own(proxy):
    h = key("hash")
    proxy.set_hash(h, "node-a", "1", ttl=0.3)
    proxy.set_hash(h, "node-b", 2)
    assert proxy.get_hash(h, "node-a") == "1"
    assert proxy.get_all_hash(h) == {"node-a": "1", "node-b": "2"}
    time.sleep(0.5)
    assert proxy.get_hash(h, "node-a") is None
    assert proxy.get_all_hash(h) == {"node-b": "2"}
    proxy.delete_hash(h, "node-b")
    assert proxy.get_all_hash(h) == {}
    assert proxy.get_hash(key("missing"), "x") is None


def test_the_proxy_reads_what_a_nodes_cache_wrote(proxy):
    h = key("skalds:hash")
    proxy.cache.apply([HashSet(h, {"gone": "1"}, ttl=0.3), HashSet(h, {"alive": "2"}, ttl=30)])
    time.sleep(0.5)
    assert proxy.get_all_hash(h) == {"alive": "2"}


def test_lists_take_one_value_or_many_and_read_back_in_order(proxy):
    lst = key("list")
    assert proxy.get_list(lst) == []
    assert proxy.push_list(lst, "a") == 1
    assert proxy.push_list(lst, ["b", "c"]) == 3
    assert proxy.push_list(lst, []) == 3
    assert proxy.get_list(lst) == ["a", "b", "c"]
    assert proxy.get_list(lst, 1, 1) == ["b"]
    proxy.overwrite_list(lst, ["z"])
    assert proxy.get_list(lst) == ["z"]


def test_a_pushed_list_can_expire(proxy):
    lst = key("list")
    proxy.push_list(lst, ["a"], ttl=0.3)
    time.sleep(0.5)
    assert proxy.get_list(lst) == []


def test_delete_key_removes_any_type_and_says_whether_it_existed(proxy):
    s, h = key("s"), key("h")
    proxy.set_message(s, "1")
    proxy.set_hash(h, "f", "1", ttl=30)
    assert proxy.delete_key(s) == 1
    assert proxy.delete_key(h) == 1
    assert proxy.delete_key(s) == 0
    assert proxy.get_message(s) is None and proxy.get_all_hash(h) == {}
    assert proxy.cache.client.exists(f"{h}:__expires__") == 0


def test_sub_keys_are_found_by_prefix_with_scan(proxy):
    root = key("root[1]*")  # glob characters in the prefix are matched literally
    proxy.set_message(f"{root}:a", "1", ttl=30)
    proxy.set_hash(f"{root}:b", "f", "1", ttl=30)
    proxy.set_message(key("elsewhere"), "1", ttl=30)
    assert proxy.get_sub_keys(root) == [f"{root}:a", f"{root}:b"]
