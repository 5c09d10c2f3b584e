-- join.lua: add an agent to a session and append a 'join' event; revives a session in its grace period.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] agent id  ARGV[3] global channel ('' = do not publish)
-- Returns {seq, joined(1) | already a member(0)}
local sid, agent, channel = ARGV[1], ARGV[2], ARGV[3]

local meta = redis.call('HMGET', K_META, 'status', 'seq', 'ttl', 'ver')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
local seq, ttl = tonumber(meta[2]), tonumber(meta[3])
local now = now_ms()
local current = redis.call('HGET', K_AGENTS, agent)
if current then
  local joined = string.match(current, '^(%d+):')
  redis.call('HSET', K_AGENTS, agent, joined .. ':' .. fmt(now))
  return {seq, 0}
end

seq = seq + 1
append_event(seq, 'join', agent, now, '{}', nil)
redis.call('HSET', K_AGENTS, agent, fmt(now) .. ':' .. fmt(now))
redis.call('HSET', K_META, 'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(tonumber(meta[4]) + 1),
  'status', 'active', 'grace', '0')
expire_session(ttl * 1000)
if channel ~= '' then
  redis.call('PUBLISH', channel, notice('join', sid, seq, agent, now))
end
return {seq, 1}
