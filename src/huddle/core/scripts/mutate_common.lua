-- mutate_common.lua: checks shared by the membership and lifecycle scripts (join, leave, checkpoint, complete),
-- run before their first write; added to those scripts only (not to the per-event emit path).

-- HMGET of the session's meta with 'status' first: no meta -> session_not_found; a meta without a valid status
-- (active|completed) -> corrupt.
local function session_meta(sid, ...)
  local meta = redis.call('HMGET', K_META, 'status', ...)
  if meta[1] ~= 'active' and meta[1] ~= 'completed' then
    if meta[1] or redis.call('EXISTS', K_META) == 1 then
      huddle_error('corrupt', K_META .. ' status')
    end
    huddle_error('session_not_found', sid)
  end
  return meta
end

-- A stored TTL in seconds: 1..10^9 (0 would make PEXPIRE delete the session; larger ones overflow PEXPIRE).
local function stored_ttl(value, key, field)
  local ttl = stored_int(value, key, field)
  if ttl < 1 or ttl > 1000000000 then
    huddle_error('corrupt', key .. ' ' .. field)
  end
  return ttl
end

-- Refuse (corrupt meta seq) unless an event with seq nxt can be appended: the log's last id must be 0-<n>, n < nxt.
local function check_log_top(nxt)
  local top = redis.call('XREVRANGE', K_EVENTS, '+', '-', 'COUNT', 1)[1]
  if top then
    local last = string.match(top[1], '^0%-(%d+)$')
    if not last or tonumber(last) >= nxt then
      huddle_error('corrupt', K_META .. ' seq')
    end
  end
end
