"""The Lua scripts of the Redis broker: every multi-key step runs as one script.

A script runs atomically on the server, so a publication's offset, its stream
entry, the meta hash and the pub/sub frame that carries it can never disagree,
however many nodes publish at once. Every script touches only the keys of one
channel (one hash tag, see :class:`~wsfleet.brokers.redis_codec.ChannelKeys`),
so each runs unchanged on one slot of a Redis Cluster.

Times come from Redis's ``TIME``, never from the node: nodes' clocks may
disagree, the server's is the one all of them share.

Key layout of one channel::

    <prefix>.meta.{c}     hash  e = epoch, o = top offset      (meta_ttl)
    <prefix>.stream.{c}   stream, entry ID "<offset>-0",
                          fields d = value, x = expire-at ms     (history ttl)
    <prefix>.idem.{c}.<k> string "<offset>:<epoch>"             (idempotent ttl)
    <prefix>.ch.{c}       pub/sub (or sharded pub/sub) channel
"""

from __future__ import annotations

__all__ = [
    "HISTORY",
    "PRESENCE_ADD",
    "PRESENCE_GET",
    "PRESENCE_REMOVE",
    "PRESENCE_STATS",
    "PUBLISH",
]

_NOW_MS = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The meta hash names the life of the stream. When it is missing (first use,
# meta_ttl passed, or Redis lost its data) a new epoch starts, and whatever an
# older life left in the stream is dropped so offsets restart cleanly at 1.
_ENSURE_EPOCH = """
epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('del', KEYS[1])
end
"""

PUBLISH = (
    """
-- KEYS: stream, meta, idempotency key, pub/sub channel
-- ARGV: value, size, ttl ms, meta ttl ms, new epoch, idempotent ttl ms (0: none),
--       delta (1/0), publish command (publish/spublish)
local idem_ttl = tonumber(ARGV[6])
if idem_ttl > 0 then
  local seen = redis.call('get', KEYS[3])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {tonumber(string.sub(seen, 1, sep - 1)), string.sub(seen, sep + 1), 1}
  end
end
local size = tonumber(ARGV[2])
local offset = 0
local epoch = ''
local prev = ''
local prev_offset = 0
if size > 0 then
"""
    + _NOW_MS
    + _ENSURE_EPOCH
    + """
  local ttl = tonumber(ARGV[3])
  local meta_ttl = tonumber(ARGV[4])
  offset = redis.call('hincrby', KEYS[2], 'o', 1)
  if meta_ttl > 0 then
    redis.call('pexpire', KEYS[2], meta_ttl)
  end
  if ARGV[7] == '1' then
    local last = redis.call('xrevrange', KEYS[1], '+', '-', 'COUNT', 1)[1]
    if last then
      local f = last[2]
      local value, expire_at = nil, 0
      for i = 1, #f, 2 do
        if f[i] == 'd' then
          value = f[i + 1]
        elseif f[i] == 'x' then
          expire_at = tonumber(f[i + 1])
        end
      end
      if value and expire_at > now then
        prev = value
        prev_offset = tonumber(string.match(last[1], '^(%d+)'))
      end
    end
  end
  redis.call('xadd', KEYS[1], 'MAXLEN', size, offset .. '-0',
             'd', ARGV[1], 'x', string.format('%d', now + ttl))
  redis.call('pexpire', KEYS[1], ttl)
end
local frame = 'p' .. offset .. ':' .. epoch .. ':' .. prev_offset .. ':' .. #prev .. ':'
  .. prev .. ARGV[1]
redis.call(ARGV[8], KEYS[4], frame)
if idem_ttl > 0 then
  redis.call('set', KEYS[3], offset .. ':' .. epoch, 'PX', idem_ttl)
end
return {offset, epoch, 0}
"""
)

HISTORY = (
    """
-- KEYS: stream, meta
-- ARGV: since offset ('' for none), limit (-1 all, 0 none), reverse (1/0:
--       newest first, and with since: the publications before it),
--       meta ttl ms, new epoch, size (0: do not trim)
-- Returns {top offset, epoch, {offset, value, offset, value, ...}}
local epoch
"""
    + _NOW_MS
    + _ENSURE_EPOCH
    + """
local meta_ttl = tonumber(ARGV[4])
if meta_ttl > 0 then
  redis.call('pexpire', KEYS[2], meta_ttl)
end
local top = tonumber(redis.call('hget', KEYS[2], 'o') or '0')
local limit = tonumber(ARGV[2])
if limit == 0 then
  return {top, epoch, {}}
end
local size = tonumber(ARGV[6])
if size > 0 then
  redis.call('xtrim', KEYS[1], 'MAXLEN', size)
end
-- Entries expire one by one (the key's TTL only bounds the whole stream):
-- drop expired ones from the old end, each is dropped once.
while true do
  local head = redis.call('xrange', KEYS[1], '-', '+', 'COUNT', 64)
  local dropped = 0
  for _, e in ipairs(head) do
    local f, expire_at = e[2], 0
    for i = 1, #f, 2 do
      if f[i] == 'x' then expire_at = tonumber(f[i + 1]) end
    end
    if expire_at > now then break end
    redis.call('xdel', KEYS[1], e[1])
    dropped = dropped + 1
  end
  if dropped < 64 then break end
end
-- Forward reads what follows since; reverse pages backwards from before it.
-- Both read the same way: one range command from `first` towards `last`.
local command, first, last = 'xrange', '-', '+'
if ARGV[3] == '1' then
  command, first, last = 'xrevrange', '+', '-'
  if ARGV[1] ~= '' then
    local before = tonumber(ARGV[1]) - 1
    if before < 1 then
      return {top, epoch, {}}
    end
    first = tostring(before)
  end
elseif ARGV[1] ~= '' then
  first = tostring(tonumber(ARGV[1]) + 1)
end
local entries
if limit > 0 then
  entries = redis.call(command, KEYS[1], first, last, 'COUNT', limit)
else
  entries = redis.call(command, KEYS[1], first, last)
end
local out = {}
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'd' then
      out[#out + 1] = tonumber(string.match(e[1], '^(%d+)'))
      out[#out + 1] = f[i + 1]
    end
  end
end
return {top, epoch, out}
"""
)

# Presence keys: KEYS = client hash (client -> info), expiry zset (client ->
# expire-at ms), user counts hash (user -> clients), node counts hash (node
# uid -> clients). A stored info starts with "<user length>:<user><node
# length>:<node uid>" (see redis_codec.encode_presence).
_PRESENCE_LIB = """
local function parse(info)
  local sep = string.find(info, ':', 1, true)
  local stop = sep + tonumber(string.sub(info, 1, sep - 1))
  local user = string.sub(info, sep + 1, stop)
  local sep2 = string.find(info, ':', stop + 1, true)
  local node = string.sub(info, sep2 + 1, sep2 + tonumber(string.sub(info, stop + 1, sep2 - 1)))
  return user, node
end
local function decrement(key, field)
  if redis.call('hincrby', key, field, -1) <= 0 then
    redis.call('hdel', key, field)
  end
end
local function left(info)
  local user, node = parse(info)
  decrement(KEYS[3], user)
  decrement(KEYS[4], node)
end
"""

_PRUNE = (
    _NOW_MS
    + _PRESENCE_LIB
    + """
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', now)
for _, client in ipairs(expired) do
  local info = redis.call('hget', KEYS[1], client)
  if info then
    redis.call('hdel', KEYS[1], client)
    left(info)
  end
  redis.call('zrem', KEYS[2], client)
end
-- ARGV: the uids of the live nodes. Entries of other nodes are not
-- answered (their node died without removing them); they expire by
-- themselves. Usually every node is live and nothing needs a scan.
local live = {}
for _, uid in ipairs(ARGV) do
  live[uid] = true
end
local all_live = true
for _, uid in ipairs(redis.call('hkeys', KEYS[4])) do
  if not live[uid] then
    all_live = false
    break
  end
end
"""
)

PRESENCE_ADD = (
    """
-- ARGV: client id, info, ttl ms, user, node uid
"""
    + _NOW_MS
    + _PRESENCE_LIB
    + """
local ttl = tonumber(ARGV[3])
local old = redis.call('hget', KEYS[1], ARGV[1])
if old then
  left(old)
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('hincrby', KEYS[3], ARGV[4], 1)
redis.call('hincrby', KEYS[4], ARGV[5], 1)
redis.call('zadd', KEYS[2], now + ttl, ARGV[1])
-- The keys outlive their longest-lived entry, then vanish by themselves:
-- a channel whose every node died leaves nothing behind.
for i = 1, 4 do
  if redis.call('pttl', KEYS[i]) < ttl then
    redis.call('pexpire', KEYS[i], ttl)
  end
end
return 1
"""
)

PRESENCE_REMOVE = (
    _PRESENCE_LIB
    + """
-- ARGV: client id
local old = redis.call('hget', KEYS[1], ARGV[1])
if not old then
  return 0
end
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
left(old)
return 1
"""
)

PRESENCE_GET = (
    _PRUNE
    + """
local flat = redis.call('hgetall', KEYS[1])
if all_live then
  return flat
end
local out = {}
for i = 1, #flat, 2 do
  local _, node = parse(flat[i + 1])
  if live[node] then
    out[#out + 1] = flat[i]
    out[#out + 1] = flat[i + 1]
  end
end
return out
"""
)

PRESENCE_STATS = (
    _PRUNE
    + """
if all_live then
  return {redis.call('hlen', KEYS[1]), redis.call('hlen', KEYS[3])}
end
local clients, users, seen = 0, 0, {}
for _, info in ipairs(redis.call('hvals', KEYS[1])) do
  local user, node = parse(info)
  if live[node] then
    clients = clients + 1
    if not seen[user] then
      seen[user] = true
      users = users + 1
    end
  end
end
return {clients, users}
"""
)
