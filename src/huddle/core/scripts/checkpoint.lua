-- checkpoint.lua: store the session's state as checkpoint cp-<seq> and append a 'checkpoint' event.
-- Never deletes the session; with a grace ttl it shortens the session's remaining lifetime to it.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id  ARGV[2] actor  ARGV[3] reason  ARGV[4] force (1|0: 0 reuses the last checkpoint
-- when nothing happened since)  ARGV[5] grace ttl seconds ('' = keep the current lifetime)
-- ARGV[6] include failure snapshot (1|0)  ARGV[7] max checkpoints kept  ARGV[8] global channel ('' = none)
-- ARGV[9] failure states CSV  ARGV[10] failure snapshot ttl ms ('' = off)  ARGV[11] events per snapshot
-- Returns {checkpoint id, seq, created(1) | reused(0), failure snapshot id or ''}

local sid, actor, reason, force, grace = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- Everything read is checked before the first write: corrupt data refuses the checkpoint and writes nothing.
local meta = session_meta(sid, 'state', 'seq', 'cp', 'cps', 'md', 'ver')
local seq, cps = stored_int(meta[3], K_META, 'seq'), stored_int(meta[5], K_META, 'cps')
local ver = stored_int(meta[7], K_META, 'ver')
if not meta[2] then
  huddle_error('corrupt', K_META .. ' state')
end
if not meta[4] or (meta[4] ~= '' and not string.match(meta[4], '^cp%-%d+$')) then
  huddle_error('corrupt', K_META .. ' cp')
end
meta[6] = meta[6] or '{}'
if force ~= '1' and meta[4] ~= '' and cps == seq then
  if grace ~= '' then
    expire_session(tonumber(grace) * 1000)
  end
  return {meta[4], cps, 0, ''}
end

-- the writes below must all succeed once the first is made: the log, agents and checkpoints keys must be of
-- their types and the log must end below the new seq
check_log_top(seq + 1)
redis.call('HLEN', K_AGENTS)
redis.call('XLEN', K_CPS)
local now = now_ms()
local failure_id = ''
if ARGV[6] == '1' and ARGV[10] ~= '' and in_csv(ARGV[9], meta[2]) then
  failure_id = write_failure(seq, now, meta[2], meta[1], meta[6], tonumber(ARGV[11]), tonumber(ARGV[10]))
end
seq = seq + 1
local cp_id = write_checkpoint(seq, now, actor, reason, meta[2], meta[1], meta[6], failure_id, ARGV[7])
redis.call('HSET', K_META, 'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(ver + 1),
  'cp', cp_id, 'cps', fmt(seq), 'ncp', '0')
if grace ~= '' then
  expire_session(tonumber(grace) * 1000)
  redis.call('HSET', K_META, 'grace', '1')
else
  keep_ttl()
end
if ARGV[8] ~= '' then
  redis.call('PUBLISH', ARGV[8], notice('checkpoint', sid, seq, actor, now))
end
return {cp_id, seq, 1, failure_id}
