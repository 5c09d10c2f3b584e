-- common.lua: helpers prepended to every huddle script (not a script of its own).
-- Every session script takes the same six keys, all in the session's hash slot:
-- KEYS[1] meta (hash)  KEYS[2] events (stream, id 0-<seq>)  KEYS[3] agents (hash agent -> joined:last_seen)
-- KEYS[4] checkpoints (stream, id 0-<seq>)  KEYS[5] idem (hash token -> seq)  KEYS[6] failures (stream)
local K_META, K_EVENTS, K_AGENTS, K_CPS, K_IDEM, K_FAIL = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]



local function fmt(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Raise a typed error; the Python side maps 'HUDDLE <code> [<detail>]' onto HuddleError subclasses (the
-- server wraps the text differently in 6.2 and 7.x, hence the brackets). Every script validates before its
-- first write, so raising never leaves a partial mutation behind.
local function huddle_error(code, detail)
  error('HUDDLE ' .. code .. ' [' .. (detail or '') .. ']')
end

-- A stored non-negative integer (meta seq/ver/ttl/...), or a typed 'corrupt' error naming key and field
-- (CorruptSessionDataError). Scripts check what they read before their first write.
local function stored_int(value, key, field)
  if type(value) ~= 'string' or #value > 15 or not string.match(value, '^%d+$') then
    huddle_error('corrupt', key .. ' ' .. field)
  end
  return tonumber(value)
end

local function in_csv(csv, item)
  return csv ~= '' and string.find(',' .. csv .. ',', ',' .. item .. ',', 1, true) ~= nil
end

-- Append one event with sequence number seq (stream id 0-<seq>).
local function append_event(seq, etype, actor, ts, payload, token)
  if token ~= nil and token ~= '' then
    redis.call('XADD', K_EVENTS, '0-' .. fmt(seq), 't', etype, 'a', actor, 'ts', fmt(ts), 'd', payload, 'k', token)
  else
    redis.call('XADD', K_EVENTS, '0-' .. fmt(seq), 't', etype, 'a', actor, 'ts', fmt(ts), 'd', payload)
  end
end

-- Set the same remaining lifetime (ms) on every session key except failures (which has its own).
local function expire_session(ttl_ms)
  for i = 1, 5 do
    redis.call('PEXPIRE', KEYS[i], ttl_ms)
  end
end

-- Keep newly created keys on the session's current lifetime without extending it.
local function keep_ttl()
  local pttl = redis.call('PTTL', K_META)
  if pttl > 0 then
    expire_session(pttl)
  end
end

-- Copy the session into the failures stream; it outlives the session (own TTL). Returns the snapshot id.
local function write_failure(seq, ts, state, status, metadata, nevents, ttl_ms)
  local agents = table.concat(redis.call('HKEYS', K_AGENTS), ',')
  local events = '[]'
  if nevents > 0 then
    events = cjson.encode(redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', nevents))
  end
  local id = redis.call('XADD', K_FAIL, '*', 'seq', fmt(seq), 'ts', fmt(ts), 'state', state, 'status', status,
    'agents', agents, 'metadata', metadata, 'events', events)
  redis.call('PEXPIRE', K_FAIL, ttl_ms)
  return id
end

-- Append a 'checkpoint' event at seq and store the session's state under checkpoint id cp-<seq>.
-- agents: the members as CSV when the caller knows them (see members_csv), else nil: read here.
local function write_checkpoint(seq, ts, actor, reason, state, status, metadata, failure_id, max_cps, agents)
  local cp_id = 'cp-' .. fmt(seq)
  append_event(seq, 'checkpoint', actor, ts,
    '{"data":{"checkpoint_id":"' .. cp_id .. '","reason":"' .. reason .. '"}}', nil)
  agents = agents or table.concat(redis.call('HKEYS', K_AGENTS), ',')
  redis.call('XADD', K_CPS, '0-' .. fmt(seq), 'ts', fmt(ts), 'state', state,
    'status', status, 'agents', agents, 'metadata', metadata, 'reason', reason, 'failure', failure_id or '')
  -- Kept to max_cps in steps of max_cps/16: an exact MAXLEN on every checkpoint deletes inside a stream node
  -- each time (measured ~20 us per checkpoint with 100 kept); so between max_cps and max_cps * 17/16 are kept.
  local keep = tonumber(max_cps)
  if redis.call('XLEN', K_CPS) > keep + math.floor(keep / 16) then
    redis.call('XTRIM', K_CPS, 'MAXLEN', keep)
  end
  return cp_id
end

local function notice(etype, sid, seq, actor, ts)
  return '{"type":"' .. etype .. '","session_id":"' .. sid .. '","seq":' .. fmt(seq) ..
    ',"actor":"' .. actor .. '","timestamp":' .. fmt(ts) .. '}'
end

-- A hash's fields as sorted 'field\0value' lines (a large hash's order depends on the server's hash seed).
local function sorted_fields(flat)
  local items = {}
  for i = 1, #flat, 2 do
    items[#items + 1] = flat[i] .. '\0' .. flat[i + 1]
  end
  table.sort(items)
  return table.concat(items, '\n')
end

-- A session's fingerprint from its parts: the meta and agents hashes (sorted fields), the SHA1 of the DUMP
-- payloads ('' when absent) of the events, checkpoints and failures streams, and the number of idempotency
-- keys. DUMP serializes in C, so no per-event Lua work. Equal fingerprints from two servers of the same
-- version mean equal sessions; unequal ones may only differ in a stream's encoding.
local function fingerprint_parts(meta, events_dump, agents, cps_dump, nidem, fail_dump)
  local function sum(payload)
    return payload ~= '' and redis.sha1hex(payload) or ''
  end
  return redis.sha1hex(table.concat({sorted_fields(meta), sum(events_dump), sorted_fields(agents), sum(cps_dump),
    tostring(nidem), sum(fail_dump)}, '\1'))
end

-- The fingerprint of the session stored under these six keys ('' when it does not exist).
local function fingerprint_keys(meta_key, events_key, agents_key, cps_key, idem_key, fail_key)
  local meta = redis.call('HGETALL', meta_key)
  if #meta == 0 then
    return ''
  end
  return fingerprint_parts(meta, redis.call('DUMP', events_key) or '', redis.call('HGETALL', agents_key),
    redis.call('DUMP', cps_key) or '', redis.call('HLEN', idem_key), redis.call('DUMP', fail_key) or '')
end
