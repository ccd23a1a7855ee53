"""The Lua scripts of the fleet state in Redis (registry and per-user counts).

Every fleet key carries one hash tag (see
:class:`~wsfleet.brokers.redis_fleet.FleetKeys`), so in a Redis Cluster they
all live in one slot and a script may read the registry while it counts a
user's connections. Some scripts reach keys they build from ``base`` (the
common part of the fleet key names): those keys carry the same tag, so they
are in the slot of the declared ones.

Key layout (``<b>`` is the base, ``<prefix>.fleet.{<prefix>}.``)::

    <b>expiry          zset   node uid -> expire-at ms
    <b>nodes           hash   node uid -> NodeInfo (JSON)
    <b>user.<user>     hash   node uid -> connections of the user on it
    <b>node-users.<uid> set   users the node holds counts for
"""

from __future__ import annotations

__all__ = ["HEARTBEAT", "LEAVE", "NODES", "USER_CLAIM", "USER_SET"]

_NOW_MS = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Forgetting a node removes its registry entry and every user count it held.
_FORGET = """
local function forget(base, uid)
  local set = base .. 'node-users.' .. uid
  for _, user in ipairs(redis.call('smembers', set)) do
    redis.call('hdel', base .. 'user.' .. user, uid)
  end
  redis.call('del', set)
  redis.call('zrem', KEYS[1], uid)
  redis.call('hdel', KEYS[2], uid)
end
"""

HEARTBEAT = (
    """
-- KEYS: expiry zset, nodes hash
-- ARGV: uid, info, ttl ms, forget after ms, base
-- Returns 1 when the node was live before this heartbeat, else 0.
"""
    + _NOW_MS
    + _FORGET
    + """
local score = redis.call('zscore', KEYS[1], ARGV[1])
local was_live = 0
if score and tonumber(score) > now then
  was_live = 1
end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
-- Nodes silent for long are forgotten by whoever heartbeats next; until
-- then their entry is only skipped, so a node back from a short outage
-- finds its counts where it left them.
local gone = redis.call('zrangebyscore', KEYS[1], '-inf', now - tonumber(ARGV[4]))
for _, uid in ipairs(gone) do
  forget(ARGV[5], uid)
end
return was_live
"""
)

LEAVE = (
    """
-- KEYS: expiry zset, nodes hash
-- ARGV: uid, base
"""
    + _FORGET
    + """
forget(ARGV[2], ARGV[1])
return 1
"""
)

NODES = (
    """
-- KEYS: expiry zset, nodes hash
-- ARGV: with info (1/0)
-- Returns the live uids, each followed by its info when asked.
"""
    + _NOW_MS
    + """
local uids = redis.call('zrangebyscore', KEYS[1], string.format('(%d', now), '+inf')
if ARGV[1] ~= '1' or #uids == 0 then
  return uids
end
local infos = redis.call('hmget', KEYS[2], unpack(uids))
local out = {}
for i, uid in ipairs(uids) do
  out[#out + 1] = uid
  out[#out + 1] = infos[i] or ''
end
return out
"""
)

USER_CLAIM = (
    """
-- KEYS: expiry zset, the user's counts hash, the node's users set
-- ARGV: uid, user, count (including the new connection), limit
-- Returns 1 when admitted (and the count stored), 0 when over the limit.
"""
    + _NOW_MS
    + """
local total = tonumber(ARGV[3])
local counts = redis.call('hgetall', KEYS[2])
for i = 1, #counts, 2 do
  if counts[i] ~= ARGV[1] then
    local score = redis.call('zscore', KEYS[1], counts[i])
    if score and tonumber(score) > now then
      total = total + tonumber(counts[i + 1])
    end
  end
end
if total > tonumber(ARGV[4]) then
  return 0
end
redis.call('hset', KEYS[2], ARGV[1], ARGV[3])
redis.call('sadd', KEYS[3], ARGV[2])
return 1
"""
)

USER_SET = """
-- KEYS: the node's users set, then one counts hash per user
-- ARGV: uid, then user and count pairs in the order of KEYS[2..]
for i = 2, #KEYS do
  local user, count = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])
  if count > 0 then
    redis.call('hset', KEYS[i], ARGV[1], count)
    redis.call('sadd', KEYS[1], user)
  else
    redis.call('hdel', KEYS[i], ARGV[1])
    redis.call('srem', KEYS[1], user)
  end
end
return 1
"""
