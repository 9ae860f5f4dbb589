"""Per-field hash expiry for servers without HPEXPIRE (Redis before 7.4).

Each hash ``K`` whose fields carry a TTL gets a companion sorted set
``K:__expires__`` (member = field, score = the deadline in server milliseconds).
``K`` itself stays a plain hash, so readers that know nothing of Skalds (the seed's
dashboards, ``redis-cli HGETALL skalds:hash``) keep working; they may merely see an
expired field until the next Skalds read or write of that hash removes it.

The three Lua scripts below purge the expired fields first, then do their work,
atomically and on the server's clock (``TIME``), so several nodes with skewed
clocks agree on what has expired. When every field has a deadline the hash key
also gets ``PEXPIREAT`` of the last one, so an abandoned hash vanishes on its own.
"""

from __future__ import annotations

__all__ = ["DEADLINES_SUFFIX", "HASH_DELETE", "HASH_GET", "HASH_GET_ALL", "HASH_SET", "deadlines"]

DEADLINES_SUFFIX = ":__expires__"


def deadlines(key: str) -> str:
    """Return the name of the sorted set that holds ``key``'s field deadlines."""
    return key + DEADLINES_SUFFIX


# Shared by every script. KEYS[1] = the hash, KEYS[2] = its deadlines.
_PRELUDE = """
local hash, deadlines = KEYS[1], KEYS[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- unpack() has a stack limit: send long argument lists in slices.
local function chunked(cmd, key, items, first, last)
  for i = first, last, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, last)))
  end
end

-- Returns the hash's type; a key that is gone leaves no stale deadlines behind.
local function kind_of()
  local kind = redis.call('TYPE', hash)['ok']
  if kind == 'none' then redis.call('DEL', deadlines) end
  return kind
end

local function purge()
  local gone = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now_ms())
  if #gone > 0 then
    chunked('HDEL', hash, gone, 1, #gone)
    chunked('ZREM', deadlines, gone, 1, #gone)
  end
end

-- When every field has a deadline the key expires with the last one.
local function fix_key_expiry()
  local fields = redis.call('HLEN', hash)
  if fields == 0 then
    redis.call('DEL', deadlines)
    return
  end
  if redis.call('ZCARD', deadlines) >= fields then
    local last = redis.call('ZRANGE', deadlines, -1, -1, 'WITHSCORES')[2]
    redis.call('PEXPIREAT', hash, last)
    redis.call('PEXPIREAT', deadlines, last)
  else
    redis.call('PERSIST', hash)
    redis.call('PERSIST', deadlines)
  end
end

local function wrong_type()
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
"""

HASH_SET = (
    _PRELUDE
    + """
-- ARGV[1] = TTL in ms ('' = no expiry); ARGV[2..] = field, value, field, value...
local kind = kind_of()
if kind ~= 'hash' and kind ~= 'none' then return wrong_type() end
purge()
chunked('HSET', hash, ARGV, 2, #ARGV)
local fields = {}
for i = 2, #ARGV, 2 do fields[#fields + 1] = ARGV[i] end
if ARGV[1] == '' then
  chunked('ZREM', deadlines, fields, 1, #fields)
else
  local at = now_ms() + tonumber(ARGV[1])
  local scored = {}
  for _, field in ipairs(fields) do
    scored[#scored + 1] = at
    scored[#scored + 1] = field
  end
  chunked('ZADD', deadlines, scored, 1, #scored)
end
fix_key_expiry()
return #fields
"""
)

HASH_DELETE = (
    _PRELUDE
    + """
-- ARGV = the fields to remove
local kind = kind_of()
if kind == 'none' then return 0 end
if kind ~= 'hash' then return wrong_type() end
purge()
chunked('HDEL', hash, ARGV, 1, #ARGV)
chunked('ZREM', deadlines, ARGV, 1, #ARGV)
fix_key_expiry()
return 1
"""
)

HASH_GET_ALL = (
    _PRELUDE
    + """
-- Returns the live fields as a flat field, value list; a non-hash reads as empty.
if kind_of() ~= 'hash' then return {} end
purge()
return redis.call('HGETALL', hash)
"""
)

HASH_GET = (
    _PRELUDE
    + """
-- ARGV[1] = the field; returns its live value or nil.
if kind_of() ~= 'hash' then return false end
purge()
return redis.call('HGET', hash, ARGV[1])
"""
)
