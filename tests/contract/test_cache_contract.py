"""What every cache backend guarantees (run against each backend)."""

from __future__ import annotations

import time
import uuid

from skalds.ports import Cache, Delete, HashDelete, HashSet, ListSet, Set


def key(name: str) -> str:
    return f"test:{uuid.uuid4().hex[:10]}:{name}"


def test_values_read_back_and_missing_keys_are_none(cache: Cache):
    k = key("v")
    assert cache.get(k) is None
    cache.set(k, "42")
    assert cache.get(k) == "42"
    cache.set(k, "43")
    assert cache.get(k) == "43"


def test_values_expire_after_their_ttl(cache: Cache):
    k = key("ttl")
    cache.set(k, "alive", ttl=0.3)
    assert cache.get(k) == "alive"
    time.sleep(0.6)
    assert cache.get(k) is None


def test_delete_removes_values_hashes_and_lists(cache: Cache):
    v, h, lst = key("v"), key("h"), key("l")
    cache.apply([Set(v, "1"), HashSet(h, {"a": "1"}), ListSet(lst, ["x"])])
    cache.delete(v, h, lst)
    assert cache.get(v) is None
    assert cache.hash_get_all(h) == {}
    assert cache.list_get(lst) == []


def test_hash_fields_expire_one_by_one(cache: Cache):
    h = key("hash")
    cache.apply([HashSet(h, {"short": "1"}, ttl=0.3), HashSet(h, {"long": "2"}, ttl=30)])
    assert cache.hash_get_all(h) == {"short": "1", "long": "2"}
    time.sleep(0.6)
    assert cache.hash_get_all(h) == {"long": "2"}


def test_hash_fields_refresh_their_ttl_when_written_again(cache: Cache):
    h = key("hash")
    cache.apply([HashSet(h, {"node": "1"}, ttl=0.5)])
    time.sleep(0.3)
    cache.apply([HashSet(h, {"node": "2"}, ttl=0.5)])
    time.sleep(0.3)
    assert cache.hash_get_all(h) == {"node": "2"}


def test_hash_delete_removes_only_the_named_fields(cache: Cache):
    h = key("hash")
    cache.apply([HashSet(h, {"a": "1", "b": "2", "c": "3"})])
    cache.apply([HashDelete(h, ("a", "c"))])
    assert cache.hash_get_all(h) == {"b": "2"}


def test_lists_are_replaced_whole_and_expire(cache: Cache):
    lst = key("list")
    cache.apply([ListSet(lst, ["a", "b"], ttl=0.3)])
    assert cache.list_get(lst) == ["a", "b"]
    cache.apply([ListSet(lst, ["c"], ttl=0.3)])
    assert cache.list_get(lst) == ["c"]
    time.sleep(0.6)
    assert cache.list_get(lst) == []


def test_an_empty_list_reads_back_empty(cache: Cache):
    lst = key("list")
    cache.apply([ListSet(lst, ["a"]), ListSet(lst, [])])
    assert cache.list_get(lst) == []


def test_a_batch_applies_in_order(cache: Cache):
    k = key("order")
    cache.apply([Set(k, "1"), Delete((k,)), Set(k, "3")])
    assert cache.get(k) == "3"


def test_a_large_batch_is_applied_whole(cache: Cache):
    prefix = key("many")
    cache.apply([Set(f"{prefix}:{i}", str(i), ttl=30) for i in range(500)])
    assert [cache.get(f"{prefix}:{i}") for i in (0, 250, 499)] == ["0", "250", "499"]
