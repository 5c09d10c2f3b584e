-- join.lua: add an agent to a session and append a 'join' event; revives a session in its grace period.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] agent id  ARGV[3] global channel ('' = do not publish)
-- Returns {seq, joined(1) | already a member(0)}

local sid, agent, channel = ARGV[1], ARGV[2], ARGV[3]

-- Everything read is checked before the first write: corrupt data refuses the join and writes nothing.
local meta = session_meta(sid, 'seq', 'ttl', 'ver')
local seq = stored_int(meta[2], K_META, 'seq')
local ttl = stored_ttl(meta[3], K_META, 'ttl')
local ver = stored_int(meta[4], K_META, 'ver')
local now = now_ms()
local current = redis.call('HGET', K_AGENTS, agent)
if current then
  local joined = string.match(current, '^(%d+):')
  if not joined then
    huddle_error('corrupt', K_AGENTS .. ' ' .. agent)
  end
  redis.call('HSET', K_AGENTS, agent, joined .. ':' .. fmt(now))
  return {seq, 0}
end

seq = seq + 1
check_log_top(seq)
append_event(seq, 'join', agent, now, '{}', nil)
redis.call('HSET', K_AGENTS, agent, fmt(now) .. ':' .. fmt(now))
redis.call('HSET', K_META, 'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(ver + 1),
  'status', 'active', 'grace', '0')
expire_session(ttl * 1000)
if channel ~= '' then
  redis.call('PUBLISH', channel, notice('join', sid, seq, agent, now))
end
return {seq, 1}
