-- rollback_session.lua: undo what one migration task wrote to a session: delete the task's copy and restore
-- the target's own copy from the task's backup keys if it overwrote one.
-- KEYS[1..6] the session keys (see common.lua)  KEYS[7] migration marker  KEYS[8..13] the task's backup keys
-- ARGV[1] task id
-- Returns {outcome: none | removed | restored, agents CSV of the removed copy, agents CSV of the restored copy,
--          restored status, restored updated ms}
local task = ARGV[1]
if redis.call('HEXISTS', KEYS[7], task) == 0 then
  return {'none', '', '', '', ''}
end
local removed_agents = table.concat(redis.call('HKEYS', K_AGENTS), ',')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local restored = false
for i = 1, 6 do
  if redis.call('EXISTS', KEYS[7 + i]) == 1 then
    redis.call('RENAME', KEYS[7 + i], KEYS[i])
    restored = true
  end
end
redis.call('HDEL', KEYS[7], task)
if not restored then
  return {'removed', removed_agents, '', '', ''}
end
local meta = redis.call('HMGET', K_META, 'status', 'updated')
return {'restored', removed_agents, table.concat(redis.call('HKEYS', K_AGENTS), ','), meta[1] or '', meta[2] or ''}
