-- emit_common.lua: helpers of the append scripts (emit, emit_batch) only, added after common.lua to those scripts
-- and to the function library; the other scripts do not carry them (a script builds every helper it holds as a
-- closure on each call, which is what EVALSHA scripts do on every call).

-- Claim an internal retry token for seq in the tokens zset: one ZADD NX of the token and of the sentinel '~'
-- (score +inf, so trimming never drops it). The sentinel lives exactly as long as the set (the set is created by
-- this ZADD, and only whole-key expiry removes it), so 2 members added means the set is new and needs a TTL.
-- Returns the seq of a duplicate (or nil) and whether the set was created now.
local function claim_token(tok_key, seq_s, token)
  local added = redis.call('ZADD', tok_key, 'NX', seq_s, token, '+inf', '~')
  if added == 0 then
    return tonumber(redis.call('ZSCORE', tok_key, token)), false
  end
  return nil, added == 2
end

-- Give back the retry token an append claimed (claim: the token, or nil; created: the set was made by this call,
-- so it goes entirely).
local function give_back(tok_key, claim, created)
  if created then
    redis.call('DEL', tok_key)
  elseif claim then
    redis.call('ZREM', tok_key, claim)
  end
end

-- Refuse an append: give back its claim, then raise.
local function refuse(tok_key, claim, created, code, detail)
  give_back(tok_key, claim, created)
  huddle_error(code, detail)
end

-- The seq of the event that carries internal retry token 'token' as its 'r' field (an append sent once with
-- mode 'f'), searched from the newest event back to the oldest one in the log; nil when none does.
local function find_retry_token(token)
  local high = '+'
  while true do
    local chunk = redis.call('XREVRANGE', K_EVENTS, high, '-', 'COUNT', 64)
    for _, entry in ipairs(chunk) do
      local fields = entry[2]
      for i = #fields - 1, 1, -2 do
        if fields[i] == 'r' then
          if fields[i + 1] == token then
            return tonumber(string.sub(entry[1], 3))
          end
          break
        end
      end
    end
    if #chunk < 64 then
      return nil
    end
    high = '(' .. chunk[#chunk][1]
  end
end

-- The emit scripts' settings, one string per manager configuration (ARGV[9] of emit.lua):
-- '<reset ttl 1|0>:<checkpoint interval, 0 = off>:<max events>:<index refresh ms>:<max checkpoints>:
-- <events per failure snapshot>:<failure snapshot ttl ms, '' = off>:<PUBLISH|SPUBLISH>:<failure states CSV>'.
-- As a Redis Function (7.0+) the parsed table stays cached between calls (a library's locals live as long as
-- the library); as a script (6.2) it is parsed on every call.
local SETTINGS, SETTINGS_COUNT = {}, 0
-- True in the function library (set by its preamble): only there do the caches below outlive a call.
local PERSISTENT = false

local function emit_settings(text)
  local reset, interval, max_events, refresh, max_cps, fail_n, fail_ttl, publish, csv =
    string.match(text, '^([01]):(%d+):(%d+):(%d+):(%d+):(%d+):(%d*):(%u+):(.*)$')
  if not reset then
    huddle_error('bad_settings', text)
  end
  local settings = {
    reset = reset == '1', interval = tonumber(interval), max_events = tonumber(max_events),
    trim_step = math.floor(tonumber(max_events) / 32), refresh_ms = tonumber(refresh), max_cps = max_cps,
    failure_events = tonumber(fail_n), failure_ttl = tonumber(fail_ttl), failure_csv = csv,
    publish = publish == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH',
  }
  if PERSISTENT then
    if SETTINGS_COUNT >= 64 then -- many managers with different settings: start over rather than grow
      SETTINGS, SETTINGS_COUNT = {}, 0
    end
    SETTINGS[text], SETTINGS_COUNT = settings, SETTINGS_COUNT + 1
  end
  return settings
end

-- The same settings when the caller also sent them split, as ARGV[11..19] before the retry mark (the script path,
-- Redis 6.2: a script parses its arguments on every call, and building the table from them costs a third of
-- matching the string).
local function emit_settings_args()
  local max_events = tonumber(ARGV[13])
  return {
    reset = ARGV[11] == '1', interval = tonumber(ARGV[12]), max_events = max_events,
    trim_step = math.floor(max_events / 32), refresh_ms = tonumber(ARGV[14]), max_cps = ARGV[15],
    failure_events = tonumber(ARGV[16]), failure_ttl = tonumber(ARGV[17]), failure_csv = ARGV[19],
    publish = ARGV[18] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH',
  }
end

-- Raise the typed 'corrupt' error for the first of 'names' whose value in 'values' (an HMGET reply in the
-- same order) is not a stored non-negative integer; a missing field is fine where names[i] ends in '?'.
-- (The lists are built here, on the error path: a script's top-level tables are rebuilt on every call on 6.2.)
local function corrupt_counters(values, which)
  local names = which == 'trim' and {'cps', 'kseq?', 'hold?', 'holdx?'} or
    {'seq', '', 'ncp', 'idx', 'ver', 'first?', 'ttl'}
  local largest, largest_value = 'seq', -1
  for i, name in ipairs(names) do
    local optional = string.sub(name, -1) == '?'
    local field = optional and string.sub(name, 1, -2) or name
    local value = values[i]
    if field ~= '' and not (optional and not value) then
      local n = stored_int(value, K_META, field)
      if n == 0 and (field == 'ttl' or field == 'first') then
        huddle_error('corrupt', K_META .. ' ' .. field)
      end
      if n > largest_value then
        largest, largest_value = field, n
      end
    end
  end
  huddle_error('corrupt', K_META .. ' ' .. largest) -- each is an integer, but too large together
end

-- Raise the typed 'corrupt' error unless 'key' is a stream or absent (checked before a script writes to it);
-- true when it is absent.
local function stream_or_none(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    huddle_error('corrupt', key .. ' ')
  end
  return kind == 'none'
end

-- The members CSV a checkpoint stores, remembered per session between emit calls (Functions only: a script's
-- locals do not outlive its call). Reading the agents hash (HKEYS + concat) costs ~8 us with 50 agents, a third
-- of a checkpoint. An entry is a chain: {seq, ver} the session had after the last emit, the CSV and member count
-- read at a checkpoint of that chain. Anything else that writes the session moves seq or ver past the chain (a
-- join or leave appends its event; imports, rollbacks and other scripts bump ver), so the entry is only used while
-- meta's seq and ver are exactly what the last emit left, and the member count (HLEN) still matches.
local MEMBERS, MEMBERS_COUNT = {}, 0

-- The chain of this session if nothing but emit wrote it since (seq, ver: meta's values now), else nil.
local function members_chain(seq, ver)
  local chain = MEMBERS[K_AGENTS]
  if chain and chain.seq == seq and chain.ver == ver then
    return chain
  end
  return nil
end

-- The members CSV from the chain (checked against HLEN and meta's 'created': a session that expired and was
-- created again under the same id can reach the same seq and ver), or read now and remembered in the chain.
local function members_csv(chain)
  if chain and chain.csv and redis.call('HLEN', K_AGENTS) == chain.count
      and redis.call('HGET', K_META, 'created') == chain.created then
    return chain.csv
  end
  local names = redis.call('HKEYS', K_AGENTS)
  local csv = table.concat(names, ',')
  if chain then
    chain.csv, chain.count, chain.created = csv, #names, redis.call('HGET', K_META, 'created')
  end
  return csv
end

-- After an emit wrote seq and ver: continue the chain, or start one (without members, read at a checkpoint).
local function members_after(chain, seq, ver)
  if chain then
    chain.seq, chain.ver = seq, ver
    return
  end
  if not PERSISTENT then
    return
  end
  if MEMBERS_COUNT >= 4096 then
    MEMBERS, MEMBERS_COUNT = {}, 0
  end
  MEMBERS[K_AGENTS], MEMBERS_COUNT = {seq = seq, ver = ver}, MEMBERS_COUNT + 1
end

-- n as text, for the small counters written on every event (a cache hit as a function; formatting costs about
-- as much as a small command).
local SMALL = {}
local function small_int(n)
  local text = SMALL[n]
  if text == nil then
    text = fmt(n)
    if PERSISTENT and n < 4096 then
      SMALL[n] = text
    end
  end
  return text
end

-- The session's state and metadata JSON (read only when a checkpoint or failure snapshot needs them).
local function read_state()
  local extra = redis.call('HMGET', K_META, 'state', 'md')
  return extra[1], extra[2] or '{}'
end

-- Trim the log so that it starts at target_first (never past a replay hold whose lease lasts), dropping the
-- idempotency keys of trimmed events (only scanned when an event with a key may be among them: kseq is the
-- last seq written with a key) and, every 64 trimmed seqs, the retry tokens (K_TOK, score = seq) below the log.
-- The log holds every seq from first to the last one, so XTRIM MINID trims exactly. Returns the new first seq.
-- hold, holdx: the meta fields of the same names (nil when no recording holds the log).
local function trim_log(first, target_first, now, kseq, tok_key, hold, holdx)
  if hold and holdx and tonumber(holdx) > now and tonumber(hold) < target_first then
    target_first = tonumber(hold)
  end
  if target_first <= first then
    return first
  end
  if kseq and kseq >= first then
    local old = redis.call('XRANGE', K_EVENTS, '-', '(0-' .. fmt(target_first))
    local tokens = {}
    for _, entry in ipairs(old) do
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'k' then
          tokens[#tokens + 1] = fields[i + 1]
        end
      end
      if #tokens >= 500 then
        redis.call('HDEL', K_IDEM, unpack(tokens))
        tokens = {}
      end
    end
    if #tokens > 0 then
      redis.call('HDEL', K_IDEM, unpack(tokens))
    end
  end
  redis.call('XTRIM', K_EVENTS, 'MINID', '0-' .. fmt(target_first))
  if tok_key and math.floor(target_first / 64) ~= math.floor(first / 64) then
    redis.call('ZREMRANGEBYSCORE', tok_key, '-inf', '(' .. fmt(target_first))
  end
  return target_first
end

-- TTL after an append. With reset: the session keys (1..5 and the tokens zset) get the full ttl again, but only
-- when meta's remaining TTL has drifted more than min(1 s, ttl/100) below it (or the session was in its grace
-- period): a busy session pays the PEXPIREs about once a second, not per event, and after any event every key
-- lives at least ttl - min(1 s, ttl/100). Keys this call may have created (checkpoints, idempotency keys, a new
-- tokens zset) get meta's remaining lifetime. Without reset: the current lifetime is kept and spread to keys
-- that may be new.
local function refresh_ttl(reset, ttl_ms, in_grace, tok_key, wrote_cps, wrote_idem, new_tok)
  local pttl = redis.call('PTTL', K_META)
  if reset then
    if in_grace or pttl < ttl_ms - math.min(1000, math.floor(ttl_ms / 100)) then
      local ttl_s = fmt(ttl_ms)
      for i = 1, 5 do
        redis.call('PEXPIRE', KEYS[i], ttl_s)
      end
      redis.call('PEXPIRE', tok_key, ttl_s)
      return
    end
    if wrote_cps then
      redis.call('PEXPIRE', K_CPS, pttl)
    end
    if wrote_idem then
      redis.call('PEXPIRE', K_IDEM, pttl)
    end
    if new_tok then
      redis.call('PEXPIRE', tok_key, pttl)
    end
    return
  end
  if pttl > 0 then
    expire_session(pttl)
    redis.call('PEXPIRE', tok_key, pttl)
  end
end
