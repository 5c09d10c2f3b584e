-- replay_hold.lua: keep the events a recording has not read yet from being trimmed (max_events_per_session).
-- Each recording holds "first seq I still need" under a lease; meta gets the minimum ('hold') and the latest
-- lease end ('holdx'), which emit.lua reads: it never trims events at or after 'hold' while 'holdx' is ahead.
-- A recorder that dies stops renewing its lease, so a lost process cannot keep a log from trimming forever.
-- KEYS: the six session keys (see common.lua), KEYS[7] holds (hash recording id -> '<seq>:<lease end ms>')
-- ARGV[1] session id  ARGV[2] recording id  ARGV[3] 'set' | 'release'
-- ARGV[4] first seq still needed ('' = the next seq to be written)  ARGV[5] lease ms
-- Returns {seq held (0 on release), last seq, first seq still in the log}
local sid, rid, op, needed, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local K_HOLDS = KEYS[7]

local meta = redis.call('HMGET', K_META, 'seq', 'first')
if not meta[1] then
  if op == 'release' then
    redis.call('HDEL', K_HOLDS, rid)
    return {0, 0, 0}
  end
  huddle_error('session_not_found', sid)
end
local seq, first = stored_int(meta[1], K_META, 'seq'), stored_int(meta[2] or '1', K_META, 'first')
local now = now_ms()
local held = 0
if op == 'set' then
  if needed == '' then
    held = seq + 1
  else
    held = tonumber(needed)
  end
  if held < first then
    huddle_error('events_trimmed', fmt(first))
  end
  redis.call('HSET', K_HOLDS, rid, fmt(held) .. ':' .. fmt(now + lease))
else
  redis.call('HDEL', K_HOLDS, rid)
end

local low, until_ms = nil, 0
local entries = redis.call('HGETALL', K_HOLDS)
for i = 1, #entries, 2 do
  local hseq, hend = string.match(entries[i + 1], '^(%d+):(%d+)$')
  hseq, hend = tonumber(hseq), tonumber(hend)
  if hend == nil or hend <= now then
    redis.call('HDEL', K_HOLDS, entries[i])
  else
    if low == nil or hseq < low then
      low = hseq
    end
    if hend > until_ms then
      until_ms = hend
    end
  end
end
if low == nil then
  redis.call('HDEL', K_META, 'hold', 'holdx')
else
  redis.call('HSET', K_META, 'hold', fmt(low), 'holdx', fmt(until_ms))
  local pttl = redis.call('PTTL', K_META)
  if pttl > 0 then
    redis.call('PEXPIRE', K_HOLDS, pttl)
  end
end
return {held, seq, first}
