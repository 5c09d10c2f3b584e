-- export_session_dump.lua: one session as serialized key payloads (DUMP), for a target whose Redis can RESTORE
-- them (same or newer RDB format). Read-only and atomic, so the six payloads are one consistent snapshot.
-- KEYS: the six session keys (see common.lua)
-- Returns {} when the session does not exist, else {meta [f,v,...], agents [agent, joined:last_seen, ...],
--   failure snapshot ids, event count, payloads [6] ('' for a missing key), remaining ttl ms [6] (-1: none),
--   the session's fingerprint (fingerprint_parts in common.lua)}
local meta = redis.call('HGETALL', K_META)
if #meta == 0 then
  return {}
end
local payloads, ttl = {}, {}
for i = 1, 6 do
  payloads[i] = redis.call('DUMP', KEYS[i]) or ''
  ttl[i] = redis.call('PTTL', KEYS[i])
end
local fail_ids = {}
if payloads[6] ~= '' then
  for i, entry in ipairs(redis.call('XRANGE', K_FAIL, '-', '+')) do
    fail_ids[i] = entry[1]
  end
end
local agents = redis.call('HGETALL', K_AGENTS)
local fingerprint = fingerprint_parts(meta, payloads[2], agents, payloads[4], redis.call('HLEN', K_IDEM),
  payloads[6])
return {meta, agents, fail_ids, redis.call('XLEN', K_EVENTS), payloads, ttl, fingerprint}
