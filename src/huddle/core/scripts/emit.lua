-- emit.lua: append one event (sequence allocation, membership, optimistic checks, state transition,
-- auto-checkpoint, failure snapshot, trimming, TTL refresh and notification in one atomic step).
-- The hot path is 8 commands (HMGET of 7 meta fields, the retry token's check-and-claim, HGET agent, TIME,
-- XADD, HSET meta, PTTL as TTL drift probe, PUBLISH); what is not due on this event is not done: the agent's
-- last_seen, the activity index and the TTLs move at most every index refresh / drift bound, the log is
-- trimmed in steps of max_events/32, and meta fields are read only when needed. Numbers become strings once.
-- KEYS: the six session keys (see common.lua), KEYS[7] tokens (zset: internal retry token -> seq)
-- ARGV[1] session id        ARGV[2] actor             ARGV[3] event type      ARGV[4] payload JSON
-- ARGV[5] token ('' = none) ARGV[6] expected seq ('' = any)
-- ARGV[7] transition from ('' = no transition)        ARGV[8] transition to
-- ARGV[9] reset ttl (1|0)   ARGV[10] checkpoint interval (0 = off)  ARGV[11] max events kept
-- ARGV[12] session channel ('' = do not publish)      ARGV[13] failure states CSV
-- ARGV[14] failure snapshot ttl ms ('' = snapshots off)  ARGV[15] events per failure snapshot
-- ARGV[16] index refresh ms (also how stale an agent's last_seen may get)  ARGV[17] max checkpoints kept
-- ARGV[18] 'SPUBLISH' to notify on the sharded channel (Redis Cluster 7.0+), anything else: PUBLISH
-- ARGV[19] '1': ARGV[5] is the caller's idempotency key (idem hash, 'k' field on the event, kept while the
--          event is in the log); otherwise ARGV[5] is an internal retry token (tokens zset, no stream field)
-- Returns the seq when nothing else happened, else {seq, index_due(0|1), checkpoint id or '', duplicate(0|1),
-- failure snapshot id or '', last seq, now ms}
local sid, actor, etype, payload, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local from = ARGV[7]
local K_TOK = KEYS[7]

-- 'status' is read only in grace: a completed session is always in grace (complete.lua sets both).
local meta = redis.call('HMGET', K_META, 'seq', 'grace', 'ncp', 'idx', 'ver', 'first', 'ttl')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
local in_grace = meta[2] == '1'
local status = in_grace and redis.call('HGET', K_META, 'status') or 'active'
local seq = tonumber(meta[1]) + 1
local seq_s = fmt(seq)
local keyed = ARGV[19] == '1'
-- A duplicate wins over every check below: a retry whose first attempt was written must get its seq back.
local claim, new_tok = nil, false
if keyed then
  local prior = redis.call('HGET', K_IDEM, token)
  if prior then
    -- a bare seq, or 'first:count' when the key was used by a batch (emit_events)
    return {tonumber(string.match(prior, '^%d+')), 0, '', 1, '', seq - 1, 0}
  end
elseif token ~= '' then
  -- Check and claim in one command; a refusal below gives the claim back (the script then wrote nothing).
  local prior
  prior, new_tok = claim_token(K_TOK, seq_s, token)
  if prior then
    return {prior, 0, '', 1, '', seq - 1, 0}
  end
  claim = token
end
if status == 'completed' then
  refuse(K_TOK, claim, new_tok, 'session_completed', sid)
end
local member = redis.call('HGET', K_AGENTS, actor)
if not member then
  refuse(K_TOK, claim, new_tok, 'not_a_member', actor)
end
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= seq - 1 then
  refuse(K_TOK, claim, new_tok, 'sequence_conflict', fmt(seq - 1))
end
local state, broken, md = nil, nil, nil
if from ~= '' then
  local extra = redis.call('HMGET', K_META, 'state', 'broken', 'md')
  state, broken, md = extra[1], extra[2] or '', extra[3] or '{}'
  if from ~= state then
    refuse(K_TOK, claim, new_tok, 'state_conflict', state)
  end
end

local t = redis.call('TIME')
local now_s = t[1] .. string.sub('00000' .. t[2], -6, -4) -- ms, without formatting a number
local now = tonumber(now_s)
if keyed then
  redis.call('XADD', K_EVENTS, '0-' .. seq_s, 't', etype, 'a', actor, 'ts', now_s, 'd', payload, 'k', token)
  redis.call('HSET', K_IDEM, token, seq_s)
else
  redis.call('XADD', K_EVENTS, '0-' .. seq_s, 't', etype, 'a', actor, 'ts', now_s, 'd', payload)
end
local refresh_ms = tonumber(ARGV[16])
-- last_seen moves at most every refresh_ms (like the activity index), not on every event.
-- (ms timestamps have 13 digits: the last 13 characters are last_seen; anything else reads as stale)
if now - (tonumber(string.sub(member, -13)) or 0) >= refresh_ms then
  redis.call('HSET', K_AGENTS, actor, string.match(member, '^%d+') .. ':' .. now_s)
end

local meta_update = {'updated', now_s, 'ver', fmt(tonumber(meta[5]) + 1)}
local n = 4
if keyed then
  meta_update[5], meta_update[6] = 'kseq', seq_s
  n = 6
end
local failure_id = ''
local failing = false
if from ~= '' then
  state = ARGV[8]
  failing = in_csv(ARGV[13], state)
  if failing then
    if broken == '' then
      broken = now_s
    end
  else
    broken = ''
  end
  meta_update[n + 1], meta_update[n + 2], meta_update[n + 3], meta_update[n + 4] = 'state', state, 'broken', broken
  n = n + 4
end
if ARGV[14] ~= '' and (failing or etype == 'broke') then
  if state == nil then
    state, md = read_state()
  end
  failure_id = write_failure(seq, now, state, status, md, tonumber(ARGV[15]), tonumber(ARGV[14]))
end

local event_seq, event_seq_s = seq, seq_s
local ncp, cp_id, cps = tonumber(meta[3]) + 1, '', nil
local interval, max_events = tonumber(ARGV[10]), tonumber(ARGV[11])
if interval > 0 and ncp >= interval then
  if state == nil then
    state, md = read_state()
  end
  seq = seq + 1
  cp_id = write_checkpoint(seq, now, actor, 'auto', state, status, md, failure_id, ARGV[17])
  ncp, cps = 0, seq
end
-- The log holds every seq from 'first' to 'seq' (only trimming removes events, oldest first): no XLEN needed.
-- It is trimmed back to max_events once it is max_events/32 over, so the trim's cost is shared by many events.
local first = tonumber(meta[6] or '1')
if seq - first + 1 > max_events + math.floor(max_events / 32) then
  local more = redis.call('HMGET', K_META, 'cps', 'kseq', 'hold', 'holdx')
  cps = cps or tonumber(more[1])
  -- The log is about to lose events: make sure a checkpoint holds the state at or after them.
  if cps < seq - max_events then
    if state == nil then
      state, md = read_state()
    end
    seq = seq + 1
    cp_id = write_checkpoint(seq, now, actor, 'trim', state, status, md, failure_id, ARGV[17])
    ncp, cps = 0, seq
  end
  local new_first = trim_log(first, seq - max_events + 1, now, tonumber(more[2]), K_TOK, more[3], more[4])
  if new_first ~= first then
    meta_update[n + 1], meta_update[n + 2] = 'first', fmt(new_first)
    n = n + 2
  end
end
if seq ~= event_seq then
  seq_s = fmt(seq)
end
meta_update[n + 1], meta_update[n + 2], meta_update[n + 3], meta_update[n + 4] = 'seq', seq_s, 'ncp', fmt(ncp)
n = n + 4
if cp_id ~= '' then
  meta_update[n + 1], meta_update[n + 2], meta_update[n + 3], meta_update[n + 4] = 'cp', cp_id, 'cps', fmt(cps)
  n = n + 4
end
local index_due = 0
if now - tonumber(meta[4]) >= refresh_ms then
  index_due = 1
  meta_update[n + 1], meta_update[n + 2] = 'idx', now_s
  n = n + 2
end
local reset = ARGV[9] == '1'
if reset and in_grace then
  meta_update[n + 1], meta_update[n + 2] = 'grace', '0'
end
redis.call('HSET', K_META, unpack(meta_update))
refresh_ttl(reset, tonumber(meta[7]) * 1000, in_grace, K_TOK, cp_id ~= '', keyed, new_tok)

if ARGV[12] ~= '' then
  redis.call(ARGV[18] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[12], '{"session_id":"' .. sid .. '","seq":' ..
    event_seq_s .. ',"type":"' .. etype .. '","actor":"' .. actor .. '","last_seq":' .. seq_s .. '}')
end
if index_due == 0 and cp_id == '' and failure_id == '' then
  return event_seq -- the common case: just the seq (a shorter reply to build and to parse)
end
return {event_seq, index_due, cp_id, 0, failure_id, seq, now}
