-- emit_batch.lua: append a list of events by one actor in one atomic step, with contiguous seqs.
-- Everything emit.lua checks is checked for the whole batch before the first write (membership, completed,
-- expected seq, and every transition's 'from' against the state as it evolves through the batch), so a refused
-- batch writes nothing. An auto-checkpoint due inside the batch is written once, right after its last event.
-- KEYS: the six session keys (see common.lua)
-- ARGV[1] session id        ARGV[2] actor             ARGV[3] idempotency token of the batch (never '')
-- ARGV[4] expected seq ('' = any)                     ARGV[5] reset ttl (1|0)
-- ARGV[6] checkpoint interval (0 = off)               ARGV[7] max events kept
-- ARGV[8] session channel ('' = do not publish)       ARGV[9] failure states CSV
-- ARGV[10] failure snapshot ttl ms ('' = off)         ARGV[11] events per failure snapshot
-- ARGV[12] index refresh ms ARGV[13] max checkpoints kept  ARGV[14] 'SPUBLISH' | 'PUBLISH'
-- ARGV[15] number of events n; then 4 per event from ARGV[16]: type, payload JSON, transition from ('' = none), to
-- Returns {first seq, n, index_due(0|1), checkpoint id or '', duplicate(0|1), {failure snapshot ids}, last seq,
--          now ms}
local sid, actor, token, expected = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[15])

local meta = redis.call('HMGET', K_META, 'status', 'state', 'seq', 'ttl', 'ncp', 'cps', 'idx', 'md', 'ver',
  'broken', 'first', 'hold', 'holdx')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
local prior = redis.call('HGET', K_IDEM, token)
if prior then
  -- 'first:count' for a batch, a bare seq for a single emit_event
  local pfirst, pcount = string.match(prior, '^(%d+):?(%d*)$')
  return {tonumber(pfirst), tonumber(pcount) or 1, 0, '', 1, {}, tonumber(meta[3]), 0}
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
-- Dry run of the transitions: the batch is refused as a whole before anything is written.
local walk = state
for i = 0, n - 1 do
  local from = ARGV[18 + 4 * i]
  if from ~= '' then
    if from ~= walk then
      huddle_error('state_conflict', walk)
    end
    walk = ARGV[19 + 4 * i]
  end
end

local now = now_ms()
local first_seq = seq + 1
local csv, snapshots_on = ARGV[9], ARGV[10] ~= ''
local broken = meta[10]
local failure_ids, failure_id = {}, ''
for i = 0, n - 1 do
  local base = 16 + 4 * i
  local etype, payload, from, to = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  seq = seq + 1
  -- The batch's token rides on its first event, so trimming that event drops the token with it.
  append_event(seq, etype, actor, now, payload, i == 0 and token or nil)
  local entering_failure = false
  if from ~= '' then
    state = to
    entering_failure = in_csv(csv, to)
    if entering_failure then
      if broken == '' then
        broken = fmt(now)
      end
    else
      broken = ''
    end
  end
  if snapshots_on and (entering_failure or etype == 'broke') then
    failure_id = write_failure(seq, now, state, meta[1], meta[8], tonumber(ARGV[11]), tonumber(ARGV[10]))
    failure_ids[#failure_ids + 1] = failure_id
  end
end
local last_event = seq
redis.call('HSET', K_AGENTS, actor, string.match(member, '^(%d+):') .. ':' .. fmt(now))
redis.call('HSET', K_IDEM, token, fmt(first_seq) .. ':' .. fmt(n))

local ncp, cps, cp_id = tonumber(meta[5]) + n, tonumber(meta[6]), ''
local interval, max_events, max_cps = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[13])
if interval > 0 and ncp >= interval then
  seq = seq + 1
  cp_id = write_checkpoint(seq, now, actor, 'auto', state, meta[1], meta[8], failure_id, max_cps)
  ncp, cps = 0, seq
end
local first = tonumber(meta[11])
local len = redis.call('XLEN', K_EVENTS)
if len > max_events then
  if cps < seq - max_events then
    seq = seq + 1
    cp_id = write_checkpoint(seq, now, actor, 'trim', state, meta[1], meta[8], failure_id, max_cps)
    ncp, cps = 0, seq
  end
  local hold = nil
  if meta[12] and meta[13] and tonumber(meta[13]) > now then
    hold = tonumber(meta[12])
  end
  first = trim_events(max_events, hold) or first
end

local index_due, idx = 0, tonumber(meta[7])
if now - idx >= tonumber(ARGV[12]) then
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
if ARGV[5] == '1' then
  meta_update[#meta_update + 1] = 'grace'
  meta_update[#meta_update + 1] = '0'
end
redis.call('HSET', K_META, unpack(meta_update))

if ARGV[5] == '1' then
  expire_session(tonumber(meta[4]) * 1000)
else
  keep_ttl()
end
if ARGV[8] ~= '' then
  local publish = ARGV[14] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
  for i = 0, n - 1 do
    redis.call(publish, ARGV[8], '{"session_id":"' .. sid .. '","seq":' .. fmt(first_seq + i) .. ',"type":"' ..
      ARGV[16 + 4 * i] .. '","actor":"' .. actor .. '","last_seq":' .. fmt(seq) .. '}')
  end
end
return {first_seq, n, index_due, cp_id, 0, failure_ids, seq, now}
