-- create.lua: create a session with its creator as first member and the 'start' event (seq 1).
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] creator  ARGV[3] ttl seconds  ARGV[4] metadata JSON  ARGV[5] initial state
-- ARGV[6] create token (a retried create returns success instead of session_exists)
-- ARGV[7] global channel ('' = do not publish)
-- Returns {seq, created_at_ms, duplicate(0|1)}
local sid, creator, ttl, metadata, state, token, channel =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]

-- A value longer than hash-max-listpack-value (64) keeps meta a hash table: every append reads 7 of its fields
-- and writes 4, which a listpack would do by scanning and moving the whole encoding (measured: docs/core.md).
local LAYOUT_NOTE = 'hash table on purpose: emit reads and writes these fields on every event (see docs/core.md)'
local existing = redis.call('HMGET', K_META, 'ctok', 'created')
-- (a meta hash without ctok, e.g. damaged, is a session too: never overwritten)
if existing[1] or existing[2] or redis.call('EXISTS', K_META) == 1 then
  if existing[1] == token then
    return {1, stored_int(existing[2], K_META, 'created'), 1}
  end
  huddle_error('session_exists', sid)
end

-- Leftovers of an earlier session with this id (e.g. meta deleted by hand) must not leak into the new one.
redis.call('DEL', K_EVENTS, K_AGENTS, K_CPS, K_IDEM)
local now = now_ms()
append_event(1, 'start', creator, now, '{"data":{"initial_state":"' .. state .. '"}}', nil)
redis.call('HSET', K_AGENTS, creator, fmt(now) .. ':' .. fmt(now))
redis.call('HSET', K_META, 'v', '1', 'status', 'active', 'state', state, 'creator', creator,
  'created', fmt(now), 'updated', fmt(now), 'seq', '1', 'first', '1', 'ver', '1', 'ttl', fmt(ttl),
  'md', metadata, 'cp', '', 'cps', '0', 'ncp', '0', 'broken', '', 'idx', fmt(now), 'ctok', token, 'grace', '0',
  'layout', LAYOUT_NOTE)
expire_session(ttl * 1000)
if channel ~= '' then
  redis.call('PUBLISH', channel, notice('start', sid, 1, creator, now))
end
return {1, now, 0}
