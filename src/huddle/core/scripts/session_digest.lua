-- session_digest.lua: a compact digest of one session, computed where the data lives (read-only).
-- KEYS[1..6] the session keys (see common.lua)
-- Returns {} when the session does not exist, else {status, state, last seq, first seq, metadata sha1,
--   sorted agents CSV, event count, events sha1, checkpoint count, checkpoints sha1, idempotency key count}
local meta = redis.call('HMGET', K_META, 'status', 'state', 'seq', 'first', 'md')
if not meta[1] then
  return {}
end

local function stream_digest(key)
  local parts, count, start = {}, 0, '-'
  while true do
    local chunk = redis.call('XRANGE', key, start, '+', 'COUNT', 500)
    for _, entry in ipairs(chunk) do
      parts[#parts + 1] = entry[1] .. '\0' .. table.concat(entry[2], '\0')
    end
    count = count + #chunk
    if #chunk < 500 then
      break
    end
    start = '(' .. chunk[#chunk][1]
  end
  return count, redis.sha1hex(table.concat(parts, '\n'))
end

local agents = redis.call('HKEYS', K_AGENTS)
table.sort(agents)
local nevents, events = stream_digest(K_EVENTS)
local ncps, cps = stream_digest(K_CPS)
return {meta[1], meta[2], meta[3], meta[4] or '1', redis.sha1hex(meta[5] or ''), table.concat(agents, ','),
  nevents, events, ncps, cps, redis.call('HLEN', K_IDEM)}
