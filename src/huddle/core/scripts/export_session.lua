-- export_session.lua: one session as the snapshot JSON import_session.lua takes (read-only, atomic, so the
-- snapshot is consistent; serialized where the data lives instead of in the client).
-- KEYS: the six session keys (see common.lua)
-- Returns {} when the session does not exist, else {snapshot JSON, meta [f,v,...], event count,
--   agents [agent, joined:last_seen, ...], failure snapshot ids}
local meta = redis.call('HGETALL', K_META)
if #meta == 0 then
  return {}
end
local events = redis.call('XRANGE', K_EVENTS, '-', '+')
local agents = redis.call('HGETALL', K_AGENTS)
local fail = redis.call('XRANGE', K_FAIL, '-', '+')
local ttl = {}
for i = 1, 6 do
  ttl[i] = redis.call('PTTL', KEYS[i])
end
local snapshot = cjson.encode({meta = meta, events = events, agents = agents,
  cps = redis.call('XRANGE', K_CPS, '-', '+'), idem = redis.call('HGETALL', K_IDEM), fail = fail, ttl = ttl,
  cpfirst = ''})
local fail_ids = {}
for i, entry in ipairs(fail) do
  fail_ids[i] = entry[1]
end
return {snapshot, meta, #events, agents, fail_ids}
