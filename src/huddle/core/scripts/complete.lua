-- complete.lua: mark a session completed (no more events) and start its grace period.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] actor (must be a member)  ARGV[3] grace ttl seconds
-- ARGV[4] global channel ('' = none)
-- Returns {seq, completed(1) | already completed(0)}

local sid, actor, grace, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

-- Everything read is checked before the first write: corrupt data refuses the completion and writes nothing.
local meta = session_meta(sid, 'seq', 'ver')
local seq = stored_int(meta[2], K_META, 'seq')
if meta[1] == 'completed' then
  return {seq, 0}
end
if redis.call('HEXISTS', K_AGENTS, actor) == 0 then
  huddle_error('not_a_member', actor)
end
local ver = stored_int(meta[3], K_META, 'ver')
local now = now_ms()
seq = seq + 1
check_log_top(seq)
append_event(seq, 'complete', actor, now, '{}', nil)
redis.call('HSET', K_META, 'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(ver + 1),
  'status', 'completed', 'grace', '1')
expire_session(grace * 1000)
if channel ~= '' then
  redis.call('PUBLISH', channel, notice('complete', sid, seq, actor, now))
end
return {seq, 1}
