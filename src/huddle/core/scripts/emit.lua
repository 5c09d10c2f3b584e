-- emit.lua: append one event (sequence allocation, membership, optimistic checks, state transition,
-- auto-checkpoint, failure snapshot, trimming, TTL refresh and notification in one atomic step).
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id        ARGV[2] actor             ARGV[3] event type      ARGV[4] payload JSON
-- ARGV[5] idempotency token ('' = none)               ARGV[6] expected seq ('' = any)
-- ARGV[7] transition from ('' = no transition)        ARGV[8] transition to
-- ARGV[9] reset ttl (1|0)   ARGV[10] checkpoint interval (0 = off)  ARGV[11] max events kept
-- ARGV[12] session channel ('' = do not publish)      ARGV[13] failure states CSV
-- ARGV[14] failure snapshot ttl ms ('' = snapshots off)  ARGV[15] events per failure snapshot
-- ARGV[16] index refresh ms  ARGV[17] max checkpoints kept
-- ARGV[18] (optional) 'SPUBLISH' to notify on the sharded channel (Redis Cluster 7.0+; the session channel
--          carries the session's hash tag, so it lives in this slot); anything else or absent: PUBLISH
-- Returns {seq, index_due(0|1), checkpoint id or '', duplicate(0|1), failure snapshot id or '', last seq, now ms}
local sid, actor, etype, payload, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expected, from, to = ARGV[6], ARGV[7], ARGV[8]

local meta = redis.call('HMGET', K_META, 'status', 'state', 'seq', 'ttl', 'ncp', 'cps', 'idx', 'md', 'ver',
  'broken', 'first', 'hold', 'holdx')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
if token ~= '' then
  local prior = redis.call('HGET', K_IDEM, token)
  if prior then
    -- a bare seq, or 'first:count' when the key was used by a batch (emit_events)
    return {tonumber(string.match(prior, '^%d+')), 0, '', 1, '', tonumber(meta[3]), 0}
  end
end
if meta[1] == 'completed' then
  huddle_error('session_completed', sid)
end
local member = redis.call('HGET', K_AGENTS, actor)
if not member then
  huddle_error('not_a_member', actor)
end
local state, seq = meta[2], tonumber(meta[3])
if expected ~= '' and tonumber(expected) ~= seq then
  huddle_error('sequence_conflict', fmt(seq))
end
if from ~= '' and from ~= state then
  huddle_error('state_conflict', state)
end

local now = now_ms()
seq = seq + 1
local event_seq = seq
append_event(seq, etype, actor, now, payload, token)
redis.call('HSET', K_AGENTS, actor, string.match(member, '^(%d+):') .. ':' .. fmt(now))
if token ~= '' then
  redis.call('HSET', K_IDEM, token, fmt(seq))
end

local broken = meta[10]
local failure_id = ''
if from ~= '' then
  state = to
  if in_csv(ARGV[13], to) then
    if broken == '' then
      broken = fmt(now)
    end
  else
    broken = ''
  end
end
local snapshot = ARGV[14] ~= '' and ((from ~= '' and in_csv(ARGV[13], to)) or etype == 'broke')
if snapshot then
  failure_id = write_failure(seq, now, state, meta[1], meta[8], tonumber(ARGV[15]), tonumber(ARGV[14]))
end

local ncp, cps, cp_id = tonumber(meta[5]) + 1, tonumber(meta[6]), ''
local interval, max_events, max_cps = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[17])
if interval > 0 and ncp >= interval then
  seq = seq + 1
  cp_id = write_checkpoint(seq, now, actor, 'auto', state, meta[1], meta[8], failure_id, max_cps)
  ncp, cps = 0, seq
end
local first = tonumber(meta[11])
local len = redis.call('XLEN', K_EVENTS)
if len > max_events then
  -- The log is about to lose events: make sure a checkpoint holds the state at or after them.
  if cps < seq - max_events then
    seq = seq + 1
    cp_id = write_checkpoint(seq, now, actor, 'trim', state, meta[1], meta[8], failure_id, max_cps)
    ncp, cps = 0, seq
  end
  -- A recording (replay) holds the events it has not read yet: trim only before them while its lease lasts.
  local hold = nil
  if meta[12] and meta[13] and tonumber(meta[13]) > now then
    hold = tonumber(meta[12])
  end
  first = trim_events(max_events, hold) or first
end

local index_due, idx = 0, tonumber(meta[7])
if now - idx >= tonumber(ARGV[16]) then
  index_due, idx = 1, now
end
local meta_update = {'seq', fmt(seq), 'updated', fmt(now), 'ver', fmt(tonumber(meta[9]) + 1), 'state', state,
  'ncp', fmt(ncp), 'broken', broken, 'idx', fmt(idx), 'first', fmt(first)}
if cp_id ~= '' then
  meta_update[#meta_update + 1] = 'cp'
  meta_update[#meta_update + 1] = cp_id
  meta_update[#meta_update + 1] = 'cps'
  meta_update[#meta_update + 1] = fmt(cps)
end
if ARGV[9] == '1' then
  meta_update[#meta_update + 1] = 'grace'
  meta_update[#meta_update + 1] = '0'
end
redis.call('HSET', K_META, unpack(meta_update))

if ARGV[9] == '1' then
  expire_session(tonumber(meta[4]) * 1000)
else
  keep_ttl()
end
if ARGV[12] ~= '' then
  local publish = ARGV[18] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
  redis.call(publish, ARGV[12], '{"session_id":"' .. sid .. '","seq":' .. fmt(event_seq) .. ',"type":"' ..
    etype .. '","actor":"' .. actor .. '","last_seq":' .. fmt(seq) .. '}')
end
return {event_seq, index_due, cp_id, 0, failure_id, seq, now}
