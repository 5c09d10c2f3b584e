-- leave.lua: remove an agent and append a 'leave' event; the last leave starts the grace period.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] agent id  ARGV[3] grace ttl seconds  ARGV[4] global channel ('' = none)
-- Returns {seq, left(1) | was not a member(0), remaining members}

local sid, agent, grace, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

-- Everything read is checked before the first write: corrupt data refuses the leave and writes nothing.
local meta = session_meta(sid, 'seq', 'ttl', 'ver')
local seq = stored_int(meta[2], K_META, 'seq')
if redis.call('HEXISTS', K_AGENTS, agent) == 0 then
  return {seq, 0, redis.call('HLEN', K_AGENTS)}
end
local ttl = stored_ttl(meta[3], K_META, 'ttl')
local ver = stored_int(meta[4], K_META, 'ver')

local now = now_ms()
seq = seq + 1
check_log_top(seq)
append_event(seq, 'leave', agent, now, '{}', nil)
redis.call('HDEL', K_AGENTS, agent)
local remaining = redis.call('HLEN', K_AGENTS)
local in_grace = '0'
if remaining == 0 or meta[1] == 'completed' then
  in_grace = '1'
end
redis.call('HSET', K_META, 'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(ver + 1),
  'grace', in_grace)
if in_grace == '1' then
  expire_session(grace * 1000)
else
  expire_session(ttl * 1000)
end
if channel ~= '' then
  redis.call('PUBLISH', channel, notice('leave', sid, seq, agent, now))
end
return {seq, 1, remaining}
