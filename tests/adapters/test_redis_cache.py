"""The Redis cache adapter on the real servers: per-field expiry, one round trip per batch."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from skalds.config.skald_config import SkaldConfig
from skalds.memory import MemoryCache
from skalds.plugins import make_backends, make_plugin_manager
from skalds.ports import Cache, Delete, HashDelete, HashSet, ListSet, Set
from skalds_redis import RedisCache
from skalds_redis.plugin import skalds_make_cache
from tests.backends.redis import REDIS_URL, VALKEY_URL, connect_cache

SERVERS = ["redis7", "valkey"]


def key(name: str) -> str:
    return f"test:{uuid.uuid4().hex[:10]}:{name}"


@pytest.fixture
def redis7() -> Iterator[RedisCache]:
    """Redis 7.0: no HPEXPIRE, per-field expiry is emulated."""
    cache = connect_cache("Redis", REDIS_URL)
    yield cache
    cache.close()


@pytest.fixture
def valkey() -> Iterator[RedisCache]:
    """Valkey 9: has HPEXPIRE."""
    cache = connect_cache("Valkey", VALKEY_URL)
    yield cache
    cache.close()


@pytest.fixture(params=SERVERS)
def any_cache(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


class CountingConnection(redis.Connection):
    """A real connection that counts how many times it writes to the socket."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        type(self).sends += 1
        return super().send_packed_command(command, check_health)


def counting_cache(name: str, url: str) -> RedisCache:
    connect_cache(name, url).close()  # skips (fails under CI) when the server is down
    return RedisCache.from_url(url, connection_class=CountingConnection)


# -- per-field expiry: native on Valkey, emulated on Redis 7.0 -------------------------


def test_valkey_is_detected_as_having_hpexpire_and_the_server_expires_the_fields(
    valkey,
):
    h = key("hash")
    valkey.apply([HashSet(h, {"short": "1"}, ttl=0.3), HashSet(h, {"long": "2"}, ttl=30)])

    assert valkey.native_field_ttl is True
    raw = valkey.client
    short_ms, long_ms = raw.hpttl(h, "short", "long")
    assert 0 < short_ms <= 300 and 29_000 < long_ms <= 30_000
    assert raw.exists(f"{h}:__expires__") == 0  # no emulation state on this server

    time.sleep(0.5)
    # Valkey itself dropped the field: even a plain HGETALL no longer sees it.
    assert raw.hgetall(h) == {"long": "2"}
    assert valkey.hash_get_all(h) == {"long": "2"}


def test_redis_7_is_detected_as_lacking_hpexpire_and_expiry_is_emulated(redis7):
    h = key("hash")
    redis7.apply([HashSet(h, {"short": "1"}, ttl=0.3), HashSet(h, {"long": "2"}, ttl=30)])

    assert redis7.native_field_ttl is False
    raw = redis7.client
    assert raw.type(h) == "hash"  # still a plain hash for readers that know nothing of Skalds
    deadlines = dict(raw.zrange(f"{h}:__expires__", 0, -1, withscores=True))
    now_ms = int(raw.time()[0]) * 1000
    assert set(deadlines) == {"short", "long"}
    assert deadlines["long"] - deadlines["short"] == pytest.approx(29_700, abs=200)
    assert deadlines["long"] > now_ms + 29_000

    time.sleep(0.5)
    assert redis7.hash_get_all(h) == {"long": "2"}
    # The read removed the expired field for everybody.
    assert raw.hgetall(h) == {"long": "2"}
    assert raw.zrange(f"{h}:__expires__", 0, -1) == ["long"]


def test_emulated_expiry_can_be_chosen_on_a_server_that_has_hpexpire():
    connect_cache("Valkey", VALKEY_URL).close()
    forced = RedisCache.from_url(VALKEY_URL, native_field_ttl=False)
    try:
        h = key("hash")
        forced.apply([HashSet(h, {"short": "1"}, ttl=0.3), HashSet(h, {"long": "2"}, ttl=30)])
        assert forced.client.exists(f"{h}:__expires__") == 1
        time.sleep(0.5)
        assert forced.hash_get_all(h) == {"long": "2"}
    finally:
        forced.close()


def test_an_emulated_hash_whose_fields_all_expired_is_gone_without_any_read(redis7):
    h = key("hash")
    redis7.apply([HashSet(h, {"a": "1", "b": "2"}, ttl=0.3)])
    time.sleep(0.5)
    assert redis7.client.exists(h, f"{h}:__expires__") == 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_field_written_again_without_ttl_no_longer_expires(request, server):
    cache = request.getfixturevalue(server)
    h = key("hash")
    cache.apply([HashSet(h, {"node": "1"}, ttl=0.3), HashSet(h, {"other": "x"}, ttl=0.3)])
    cache.apply([HashSet(h, {"node": "2"})])
    time.sleep(0.5)
    assert cache.hash_get_all(h) == {"node": "2"}
    assert cache.client.pttl(h) == -1  # the key no longer expires either


def test_deleting_the_last_permanent_field_lets_the_emulated_key_expire(redis7):
    h = key("hash")
    redis7.apply([HashSet(h, {"keep": "1"}), HashSet(h, {"beat": "2"}, ttl=5)])
    assert redis7.client.pttl(h) == -1
    redis7.apply([HashDelete(h, ("keep",))])
    assert 0 < redis7.client.pttl(h) <= 5000
    assert redis7.hash_get_all(h) == {"beat": "2"}


def test_deleting_an_emulated_hash_removes_its_deadlines_too(redis7):
    h = key("hash")
    redis7.apply([HashSet(h, {"a": "1"}, ttl=30)])
    redis7.delete(h)
    assert redis7.client.exists(h, f"{h}:__expires__") == 0


# -- one round trip per batch ----------------------------------------------------------


def node_report(prefix: str, tasks: int) -> list:
    """A batch shaped like NodeReporter.report_once (6 node writes + 2 per task)."""
    ops: list = [
        HashSet(f"{prefix}:skalds:hash", {"node-1": str(int(time.time() * 1000))}, 3.0),
        HashSet(f"{prefix}:skalds:mode:hash", {"node-1": "node"}, 3.0),
        Set(f"{prefix}:skalds:node-1:heartbeat", "7", 3.0),
        ListSet(f"{prefix}:skalds:node-1:allow-task-class-name", ["A", "B"], 3.0),
        ListSet(f"{prefix}:skalds:node-1:all-task", [f"t{i}" for i in range(tasks)], 3.0),
        Set(f"{prefix}:skalds:node-1:info", '{"id":"node-1"}', 3.0),
    ]
    for i in range(tasks):
        ops.append(Set(f"{prefix}:task:t{i}:heartbeat", str(i % 200), 10.0))
        ops.append(Set(f"{prefix}:task:t{i}:status", "Running", 10.0))
    return ops


def set_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))


@pytest.mark.parametrize(("name", "url"), [("Redis", REDIS_URL), ("Valkey", VALKEY_URL)])
def test_a_node_report_of_600_writes_is_one_round_trip(name, url):
    cache = counting_cache(name, url)
    try:
        cache.detect_field_ttl()  # first use asks the server once; not part of a report
        prefix = key("report")
        ops = node_report(prefix, tasks=297)
        assert len(ops) == 600
        sets_before = set_calls(cache.client)
        CountingConnection.sends = 0

        cache.apply(ops)

        assert CountingConnection.sends == 1
        # The server did run every write (other clients may add to the count).
        assert set_calls(cache.client) - sets_before >= 2 * 297 + 2
        assert cache.get(f"{prefix}:task:t296:status") == "Running"
        assert cache.hash_get_all(f"{prefix}:skalds:hash").keys() == {"node-1"}
        assert len(cache.list_get(f"{prefix}:skalds:node-1:all-task")) == 297
    finally:
        cache.close()


def test_reads_are_one_round_trip_each_even_when_expiry_is_emulated():
    cache = counting_cache("Redis", REDIS_URL)
    try:
        h = key("hash")
        cache.apply([HashSet(h, {"a": "1"}, ttl=30)])
        CountingConnection.sends = 0
        assert cache.hash_get_all(h) == {"a": "1"}
        assert cache.get(key("missing")) is None
        assert cache.list_get(key("missing")) == []
        assert CountingConnection.sends == 3
    finally:
        cache.close()


# -- what the memory cache does, Redis does too -----------------------------------------


def test_reading_a_key_as_another_type_reads_as_missing(any_cache):
    s, h, lst = key("s"), key("h"), key("l")
    any_cache.apply([Set(s, "1"), HashSet(h, {"a": "1"}), ListSet(lst, ["x"])])
    assert any_cache.hash_get_all(s) == {} and any_cache.list_get(s) == []
    assert any_cache.get(h) is None and any_cache.list_get(h) == []
    assert any_cache.get(lst) is None and any_cache.hash_get_all(lst) == {}


def test_a_zero_ttl_means_already_expired_as_in_memory(any_cache):
    memory = MemoryCache()
    for cache in (memory, any_cache):
        s, h, lst = key("s"), key("h"), key("l")
        cache.apply([Set(s, "1", ttl=0), HashSet(h, {"a": "1"}, ttl=0), ListSet(lst, ["x"], ttl=0)])
        assert (cache.get(s), cache.hash_get_all(h), cache.list_get(lst)) == (None, {}, [])


def test_empty_batches_and_empty_deletes_are_harmless(any_cache):
    any_cache.apply([])
    any_cache.apply([Delete(()), HashDelete(key("h"), ()), HashSet(key("h"), {})])


def test_ping_answers_and_the_cache_is_a_cache(any_cache):
    assert isinstance(any_cache, Cache)
    assert any_cache.ping() is True


# -- the plugin ------------------------------------------------------------------------


def test_the_plugin_answers_for_redis_urls_only():
    pm = make_plugin_manager()
    config = SkaldConfig()
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0"):
        assert isinstance(pm.hook.skalds_make_cache(url=url, config=config), RedisCache)
    assert isinstance(pm.hook.skalds_make_cache(url="memory://", config=config), MemoryCache)


def test_the_seed_config_fields_select_redis_for_the_cache():
    connect_cache("Redis", REDIS_URL).close()
    config = SkaldConfig(redis_host="127.0.0.1", redis_port=6379, redis_db=2)
    backends = make_backends(make_plugin_manager(), config)
    try:
        assert isinstance(backends.cache, RedisCache)
        assert backends.cache.address == "redis://127.0.0.1:6379/2"
        k = key("seed")
        backends.cache.set(k, "ok", ttl=5)
        assert backends.cache.client.connection_pool.connection_kwargs["db"] == 2
        assert backends.cache.get(k) == "ok"
    finally:
        backends.close()


def test_a_url_without_a_database_takes_the_configs():
    url_db = skalds_make_cache(url="redis://127.0.0.1:6379/4", config=SkaldConfig(redis_db=1))
    config_db = skalds_make_cache(url="redis://127.0.0.1:6379", config=SkaldConfig(redis_db=1))
    assert url_db is not None and url_db.address.endswith("/4")
    assert config_db is not None and config_db.address.endswith("/1")
