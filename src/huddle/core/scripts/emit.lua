-- emit.lua: append one event (sequence allocation, membership, optimistic checks, state transition,
-- auto-checkpoint, failure snapshot, trimming, TTL refresh and notification in one atomic step).
-- The hot path is 7 commands (HMGET of 8 meta fields, HGET agent, TIME, XADD, HSET meta, PTTL as TTL drift
-- probe, PUBLISH); what is not due on this event is not done: the agent's last_seen, the activity index and
-- the TTLs move at most every index refresh / drift bound, the log is trimmed in steps of max_events/32, and
-- meta fields are read only when needed. Everything read is checked before the first write: a refused append
-- (including corrupt stored numbers) writes nothing.
-- KEYS: the six session keys (see common.lua), KEYS[7] tokens (zset: retry token -> seq)
-- ARGV[1] session id        ARGV[2] actor             ARGV[3] event type      ARGV[4] payload JSON
-- ARGV[5] token: the caller's idempotency key or an internal retry token ('' = none)
-- ARGV[6] expected seq ('' = any)  ARGV[7] transition from ('' = no transition)  ARGV[8] transition to
-- ARGV[9] the manager's settings (see emit_settings in common.lua; parsed once per library load and cached)
-- ARGV[10] session channel ('' = do not publish)
-- ARGV[11] how the token is checked (the last argument: on the script path ARGV[11..19] are the settings split,
--          see emit_settings_args, and the mode is ARGV[20]):
--   'k' the caller's idempotency key: idem hash + 'k' field on the event, kept while the event is in the log;
--   'z' internal token claimed in the tokens zset by ZADD NX (any re-send of the same command is safe);
--   'f' first send of a command whose re-sends carry 'r' (the client layer flips the byte once the command is on
--       the wire): the token rides on the event as field 'r', nothing else is written for it;
--   'r' re-send: the token is looked up in the tokens zset and the log's 'r' fields; if absent it is claimed in
--       the zset and meta 'rt' gets the seq, so an 'f' send that arrives later (reordered) checks the zset too.
-- Returns the seq when nothing else happened, else {seq, index_due(0|1), checkpoint id or '', duplicate(0|1),
-- failure snapshot id or '', last seq, now ms}
local sid, actor, etype, token, from, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[7], ARGV[#ARGV]
local K_TOK = KEYS[7]
local cfg = SETTINGS[ARGV[9]] or (#ARGV == 20 and emit_settings_args() or emit_settings(ARGV[9]))

-- 'status' is read only in grace: a completed session is always in grace (complete.lua sets both).
local meta = redis.call('HMGET', K_META, 'seq', 'grace', 'ncp', 'idx', 'ver', 'first', 'ttl', 'rt')
if not meta[1] then
  huddle_error('session_not_found', sid)
end
local seq, ncp, idx, ver = tonumber(meta[1]), tonumber(meta[3]), tonumber(meta[4]), tonumber(meta[5])
local first, ttl = tonumber(meta[6] or '1'), tonumber(meta[7])
-- Stored counters must be non-negative numbers (NaN and inf fail the sum's comparison), checked once, here;
-- a fractional seq is refused by the XADD below (it writes first); fractional ncp/idx/ver do no harm.
if not (seq and ncp and idx and ver and first and ttl and seq + ncp + idx + ver + first + ttl < 1e13 and
    seq >= 0 and ncp >= 0 and idx >= 0 and ver >= 0 and first >= 1 and ttl > 0 and first % 1 + ttl % 1 == 0) then
  corrupt_counters(meta, 'emit')
end
local in_grace = meta[2] == '1'
local status = in_grace and redis.call('HGET', K_META, 'status') or 'active'
local last = seq
seq = seq + 1
local seq_s = fmt(seq) -- numbers are formatted once: a conversion costs as much as a small command
local keyed = mode == 'k'
-- A duplicate wins over every check below: a retry whose first attempt was written must get its seq back.
local claim, new_tok = nil, false
if keyed then
  local prior = redis.call('HGET', K_IDEM, token)
  if prior then
    -- a bare seq, or 'first:count' when the key was used by a batch (emit_events)
    return {tonumber(string.match(prior, '^%d+')), 0, '', 1, '', last, 0}
  end
elseif token == '' then
  mode = ''
elseif mode == 'f' then
  local rt = meta[8]
  -- Only while an event written by a re-send is in the log can a late first send be its duplicate.
  if rt and not (tonumber(rt) and tonumber(rt) < first) then
    local prior = redis.call('ZSCORE', K_TOK, token)
    if prior then
      return {tonumber(prior), 0, '', 1, '', last, 0}
    end
  end
elseif mode == 'r' then
  local prior = redis.call('ZSCORE', K_TOK, token)
  prior = prior and tonumber(prior) or find_retry_token(token)
  if prior then
    return {prior, 0, '', 1, '', last, 0}
  end
else -- 'z': check and claim in one command; a refusal below gives the claim back (the script then wrote nothing)
  local prior
  prior, new_tok = claim_token(K_TOK, seq_s, token)
  if prior then
    return {prior, 0, '', 1, '', last, 0}
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
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= last then
  refuse(K_TOK, claim, new_tok, 'sequence_conflict', last)
end
local state, broken, md = nil, nil, nil
local failing = false
if from ~= '' then
  local extra = redis.call('HMGET', K_META, 'state', 'broken', 'md')
  state, broken, md = extra[1], extra[2] or '', extra[3] or '{}'
  if from ~= state then
    refuse(K_TOK, claim, new_tok, 'state_conflict', state)
  end
  failing = in_csv(cfg.failure_csv, ARGV[8])
end

-- What falls due on this event is decided (and what it needs is read and checked) before the first write.
local snapshot = cfg.failure_ttl and (failing or etype == 'broke')
ncp = ncp + 1
local auto_cp = cfg.interval > 0 and ncp >= cfg.interval
local top = auto_cp and seq + 1 or seq
local more, cps, trim_cp, new_cps = nil, nil, false, false
if top - first + 1 > cfg.max_events + cfg.trim_step then
  more = redis.call('HMGET', K_META, 'cps', 'kseq', 'hold', 'holdx')
  cps = auto_cp and top or tonumber(more[1])
  if not (cps and (not more[2] or tonumber(more[2])) and (not more[3] or tonumber(more[3])) and
      (not more[4] or tonumber(more[4]))) then
    corrupt_counters(more, 'trim')
  end
  -- The log is about to lose events: a checkpoint must hold the state at or after them.
  trim_cp = cps < top - cfg.max_events
end
local chain, agents_csv = members_chain(last, ver), nil
if auto_cp or trim_cp or snapshot then
  if state == nil then
    state, md = read_state()
  end
  if auto_cp or trim_cp then
    new_cps = stream_or_none(K_CPS) -- a new stream needs the session's TTL; an existing one keeps its own
    agents_csv = members_csv(chain)
  end
  if snapshot then
    stream_or_none(K_FAIL)
  end
end

local t = redis.call('TIME')
local now_s = t[1] .. string.sub('00000' .. t[2], -6, -4) -- ms, without formatting a number
local now = tonumber(now_s)
if mode == 'r' then
  new_tok = select(2, claim_token(K_TOK, seq_s, token))
  claim = token
end
local added
if mode == 'f' then
  added = redis.pcall('XADD', K_EVENTS, '0-' .. seq_s, 't', etype, 'a', actor, 'ts', now_s, 'd', ARGV[4], 'r', token)
elseif keyed then
  added = redis.pcall('XADD', K_EVENTS, '0-' .. seq_s, 't', etype, 'a', actor, 'ts', now_s, 'd', ARGV[4], 'k', token)
else
  added = redis.pcall('XADD', K_EVENTS, '0-' .. seq_s, 't', etype, 'a', actor, 'ts', now_s, 'd', ARGV[4])
end
if type(added) == 'table' then -- nothing was written but a claim, which goes back
  local why = added.err or ''
  if string.find(why, 'smaller than the target stream top', 1, true) then
    refuse(K_TOK, claim, new_tok, 'corrupt', K_META .. ' seq') -- the log is past meta's seq
  end
  give_back(K_TOK, claim, new_tok)
  if string.find(why, 'WRONGTYPE', 1, true) then
    huddle_error('corrupt', K_EVENTS .. ' ')
  end
  error(added)
end
if keyed then
  redis.call('HSET', K_IDEM, token, seq_s)
end
-- last_seen moves at most every refresh_ms (like the activity index), not on every event.
-- (ms timestamps have 13 digits: the last 13 characters are last_seen; anything else reads as stale)
if now - (tonumber(string.sub(member, -13)) or 0) >= cfg.refresh_ms then
  redis.call('HSET', K_AGENTS, actor, (string.match(member, '^%d+') or now_s) .. ':' .. now_s)
end

local event_seq, event_seq_s = seq, seq_s
local failure_id, cp_id = '', ''
local extra = nil -- meta fields beyond the common four
if from ~= '' then
  state = ARGV[8]
  if failing then
    if broken == '' then
      broken = now_s
    end
  else
    broken = ''
  end
  extra = {'state', state, 'broken', broken}
end
if snapshot then
  failure_id = write_failure(seq, now, state, status, md, cfg.failure_events, cfg.failure_ttl)
end
if auto_cp then
  seq = seq + 1
  cp_id = write_checkpoint(seq, now, actor, 'auto', state, status, md, failure_id, cfg.max_cps, agents_csv)
  ncp, cps = 0, seq
end
if more then
  if trim_cp then
    seq = seq + 1
    cp_id = write_checkpoint(seq, now, actor, 'trim', state, status, md, failure_id, cfg.max_cps, agents_csv)
    ncp, cps = 0, seq
  end
  local new_first = trim_log(first, seq - cfg.max_events + 1, now, tonumber(more[2]), K_TOK, more[3], more[4])
  if new_first ~= first then
    extra = extra or {}
    extra[#extra + 1], extra[#extra + 2] = 'first', new_first
  end
end
if cp_id ~= '' then
  extra = extra or {}
  extra[#extra + 1], extra[#extra + 2], extra[#extra + 3], extra[#extra + 4] = 'cp', cp_id, 'cps', cps
end
local index_due = now - idx >= cfg.refresh_ms
if index_due then
  extra = extra or {}
  extra[#extra + 1], extra[#extra + 2] = 'idx', now_s
end
if keyed then
  extra = extra or {}
  extra[#extra + 1], extra[#extra + 2] = 'kseq', event_seq_s
elseif mode == 'r' then
  extra = extra or {}
  extra[#extra + 1], extra[#extra + 2] = 'rt', event_seq_s
end
local reset = cfg.reset
if reset and in_grace then
  extra = extra or {}
  extra[#extra + 1], extra[#extra + 2] = 'grace', '0'
end
if seq ~= event_seq then
  seq_s = fmt(seq)
end
if extra then
  redis.call('HSET', K_META, 'updated', now_s, 'ver', fmt(ver + 1), 'seq', seq_s, 'ncp', small_int(ncp), unpack(extra))
else
  redis.call('HSET', K_META, 'updated', now_s, 'ver', fmt(ver + 1), 'seq', seq_s, 'ncp', small_int(ncp))
end
refresh_ttl(reset, ttl * 1000, in_grace, K_TOK, new_cps, keyed, new_tok)
members_after(chain, seq, ver + 1)

if ARGV[10] ~= '' then
  redis.call(cfg.publish, ARGV[10], '{"session_id":"' .. sid .. '","seq":' .. event_seq_s .. ',"type":"' .. etype ..
    '","actor":"' .. actor .. '","last_seq":' .. seq_s .. '}')
end
if not index_due and cp_id == '' and failure_id == '' then
  return event_seq -- the common case: just the seq (a shorter reply to build and to parse)
end
return {event_seq, index_due and 1 or 0, cp_id, 0, failure_id, seq, now}
