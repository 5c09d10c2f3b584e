-- emit_batch.lua: append a list of events by one actor in one atomic step, with contiguous seqs.
-- Everything emit.lua checks is checked for the whole batch before the first write (membership, completed,
-- expected seq, and every transition's 'from' against the state as it evolves through the batch), so a refused
-- batch writes nothing. An auto-checkpoint due inside the batch is written once, right after its last event.
-- KEYS: the six session keys (see common.lua), KEYS[7] tokens (zset: internal retry token -> last seq)
-- ARGV[1] session id        ARGV[2] actor             ARGV[3] token of the batch (never '')
-- ARGV[4] expected seq ('' = any)                     ARGV[5] reset ttl (1|0)
-- ARGV[6] checkpoint interval (0 = off)               ARGV[7] max events kept
-- ARGV[8] session channel ('' = do not publish)       ARGV[9] failure states CSV
-- ARGV[10] failure snapshot ttl ms ('' = off)         ARGV[11] events per failure snapshot
-- ARGV[12] index refresh ms ARGV[13] max checkpoints kept  ARGV[14] 'SPUBLISH' | 'PUBLISH'
-- ARGV[15] number of events n   ARGV[16] '1': ARGV[3] is the caller's idempotency key (idem hash, stored as
-- 'first:n', 'k' field on the batch's last event), else an internal retry token (tokens zset)
-- then 4 per event from ARGV[17]: type, payload JSON, transition from ('' = none), transition to
-- Returns {first seq, n, index_due(0|1), checkpoint id or '', duplicate(0|1), {failure snapshot ids}, last seq,
--          now ms}
local sid, actor, token, expected = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n, keyed = tonumber(ARGV[15]), ARGV[16] == '1'
local K_TOK = KEYS[7]

local meta = redis.call('HMGET', K_META, 'status', 'state', 'seq', 'ttl', 'ncp', 'cps', 'idx', 'ver', 'first',
  'grace', 'kseq', 'broken', 'md', 'hold', 'holdx')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
-- Every stored number is checked before the first write (corrupt data: typed error, nothing written).
local seq = stored_int(meta[3], K_META, 'seq')
stored_int(meta[4], K_META, 'ttl')
stored_int(meta[5], K_META, 'ncp')
stored_int(meta[6], K_META, 'cps')
stored_int(meta[7], K_META, 'idx')
stored_int(meta[8], K_META, 'ver')
for i, name in pairs({[9] = 'first', [11] = 'kseq', [14] = 'hold', [15] = 'holdx'}) do
  if meta[i] then
    stored_int(meta[i], K_META, name)
  end
end
if tonumber(meta[4]) == 0 or meta[9] == '0' or seq + n + 2 >= 1e13 then
  huddle_error('corrupt', K_META .. ' ' .. (tonumber(meta[4]) == 0 and 'ttl' or meta[9] == '0' and 'first' or 'seq'))
end
local claim, new_tok = nil, false
if keyed then
  local prior = redis.call('HGET', K_IDEM, token)
  if prior then
    -- 'first:count' for a batch, a bare seq for a single emit_event
    local pfirst, pcount = string.match(prior, '^(%d+):?(%d*)$')
    return {tonumber(pfirst), tonumber(pcount) or 1, 0, '', 1, {}, seq, 0}
  end
else
  local prior
  -- Scored with the batch's last seq: the token lives until the batch's last event leaves the log.
  prior, new_tok = claim_token(K_TOK, fmt(seq + n), token)
  if prior then
    return {prior - n + 1, n, 0, '', 1, {}, seq, 0}
  end
  claim = token
end
if meta[1] == 'completed' then
  refuse(K_TOK, claim, new_tok, 'session_completed', sid)
end
local member = redis.call('HGET', K_AGENTS, actor)
if not member then
  refuse(K_TOK, claim, new_tok, 'not_a_member', actor)
end
local state = meta[2]
if expected ~= '' and tonumber(expected) ~= seq then
  refuse(K_TOK, claim, new_tok, 'sequence_conflict', fmt(seq))
end
-- Dry run of the transitions: the batch is refused as a whole before anything is written.
local walk, snapshots_due = state, false
for i = 0, n - 1 do
  local from = ARGV[19 + 4 * i]
  if from ~= '' then
    if from ~= walk then
      refuse(K_TOK, claim, new_tok, 'state_conflict', walk)
    end
    walk = ARGV[20 + 4 * i]
    snapshots_due = snapshots_due or in_csv(ARGV[9], walk)
  end
  snapshots_due = snapshots_due or ARGV[17 + 4 * i] == 'broke'
end
-- The streams a checkpoint or a failure snapshot will write to must be streams (or absent), checked up front.
local cp_due = tonumber(ARGV[6]) > 0 and tonumber(meta[5]) + n >= tonumber(ARGV[6])
local top = seq + n + (cp_due and 1 or 0)
local max_kept = tonumber(ARGV[7])
if cp_due or top - tonumber(meta[9] or '1') + 1 > max_kept + math.floor(max_kept / 32) then
  stream_or_none(K_CPS)
end
if snapshots_due and ARGV[10] ~= '' then
  stream_or_none(K_FAIL)
end

local now = now_ms()
local now_s = fmt(now)
local first_seq = seq + 1
local csv, snapshots_on = ARGV[9], ARGV[10] ~= ''
local broken, md = meta[12] or '', meta[13] or '{}'
local failure_ids, failure_id, moved = {}, '', false
for i = 0, n - 1 do
  local base = 17 + 4 * i
  local etype, payload, from = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  seq = seq + 1
  local added
  if i == n - 1 and keyed then
    -- The key rides on the batch's last event, so it lasts as long as any event of the batch is in the log.
    added = redis.pcall('XADD', K_EVENTS, '0-' .. seq, 't', etype, 'a', actor, 'ts', now_s, 'd', payload, 'k', token)
  else
    added = redis.pcall('XADD', K_EVENTS, '0-' .. seq, 't', etype, 'a', actor, 'ts', now_s, 'd', payload)
  end
  if type(added) == 'table' then -- only the first XADD can fail (the ids after it grow): nothing written yet
    local why = added.err or ''
    if string.find(why, 'smaller than the target stream top', 1, true) then
      refuse(K_TOK, claim, new_tok, 'corrupt', K_META .. ' seq')
    end
    give_back(K_TOK, claim, new_tok)
    if string.find(why, 'WRONGTYPE', 1, true) then
      huddle_error('corrupt', K_EVENTS .. ' ')
    end
    error(added)
  end
  local failing = false
  if from ~= '' then
    moved = true
    state = ARGV[base + 3]
    failing = in_csv(csv, state)
    if failing then
      if broken == '' then
        broken = now_s
      end
    else
      broken = ''
    end
  end
  if snapshots_on and (failing or etype == 'broke') then
    failure_id = write_failure(seq, now, state, meta[1], md, tonumber(ARGV[11]), tonumber(ARGV[10]))
    failure_ids[#failure_ids + 1] = failure_id
  end
end
local refresh_ms = tonumber(ARGV[12])
local joined, seen = string.match(member, '^(%d+):(%d*)')
if now - (tonumber(seen) or 0) >= refresh_ms then
  redis.call('HSET', K_AGENTS, actor, (joined or now_s) .. ':' .. now_s) -- (a garbled entry is rewritten)
end
local meta_update = {'updated', now_s, 'ver', tonumber(meta[8]) + 1}
if keyed then
  redis.call('HSET', K_IDEM, token, fmt(first_seq) .. ':' .. fmt(n))
  meta_update[#meta_update + 1] = 'kseq'
  meta_update[#meta_update + 1] = first_seq + n - 1
end
if moved then
  meta_update[#meta_update + 1] = 'state'
  meta_update[#meta_update + 1] = state
  meta_update[#meta_update + 1] = 'broken'
  meta_update[#meta_update + 1] = broken
end

local ncp, cps, cp_id = tonumber(meta[5]) + n, tonumber(meta[6]), ''
local interval, max_events = tonumber(ARGV[6]), tonumber(ARGV[7])
if interval > 0 and ncp >= interval then
  seq = seq + 1
  cp_id = write_checkpoint(seq, now, actor, 'auto', state, meta[1], md, failure_id, ARGV[13])
  ncp, cps = 0, seq
end
local first = tonumber(meta[9] or '1')
if seq - first + 1 > max_events + math.floor(max_events / 32) then
  if cps < seq - max_events then
    seq = seq + 1
    cp_id = write_checkpoint(seq, now, actor, 'trim', state, meta[1], md, failure_id, ARGV[13])
    ncp, cps = 0, seq
  end
  local new_first = trim_log(first, seq - max_events + 1, now, keyed and (first_seq + n - 1) or tonumber(meta[11]), K_TOK, meta[14],
    meta[15])
  if new_first ~= first then
    meta_update[#meta_update + 1] = 'first'
    meta_update[#meta_update + 1] = new_first
  end
end
meta_update[#meta_update + 1] = 'seq'
meta_update[#meta_update + 1] = seq
meta_update[#meta_update + 1] = 'ncp'
meta_update[#meta_update + 1] = ncp
if cp_id ~= '' then
  meta_update[#meta_update + 1] = 'cp'
  meta_update[#meta_update + 1] = cp_id
  meta_update[#meta_update + 1] = 'cps'
  meta_update[#meta_update + 1] = cps
end
local index_due = 0
if now - tonumber(meta[7]) >= refresh_ms then
  index_due = 1
  meta_update[#meta_update + 1] = 'idx'
  meta_update[#meta_update + 1] = now_s
end
local reset = ARGV[5] == '1'
if reset and meta[10] == '1' then
  meta_update[#meta_update + 1] = 'grace'
  meta_update[#meta_update + 1] = '0'
end
redis.call('HSET', K_META, unpack(meta_update))
refresh_ttl(reset, tonumber(meta[4]) * 1000, meta[10] == '1', K_TOK, cp_id ~= '', keyed, new_tok)

if ARGV[8] ~= '' then
  local publish = ARGV[14] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
  for i = 0, n - 1 do
    redis.call(publish, ARGV[8], '{"session_id":"' .. sid .. '","seq":' .. (first_seq + i) .. ',"type":"' ..
      ARGV[17 + 4 * i] .. '","actor":"' .. actor .. '","last_seq":' .. seq .. '}')
  end
end
return {first_seq, n, index_due, cp_id, 0, failure_ids, seq, now}
