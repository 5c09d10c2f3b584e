-- migration_load.lua: read a migration task consistently (one script on the task's slot; read-only).
-- KEYS[1] task (hash)  KEYS[2] conflicts (list)  KEYS[3] errors (list)  ARGV[1] how many recent records
-- Returns {task fields as [f, v, ...], latest conflicts, latest errors}.
local recent = -tonumber(ARGV[1])
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('LRANGE', KEYS[2], recent, -1),
  redis.call('LRANGE', KEYS[3], recent, -1),
}
