-- migration_commit.lua: record one batch of a migration task atomically. Every key carries the task id as hash
-- tag (one slot), so this also runs on a cluster, where redis-py's MULTI pipelines are slow and cross-slot-shy.
-- KEYS[1] task (hash)  KEYS[2] ids (list)  KEYS[3] conflicts (list)  KEYS[4] errors (list)  KEYS[5] written (set)
-- ARGV[1] ttl (s)  ARGV[2] cursor (JSON), then four counted groups, each '<n>' followed by n items:
--   counter increments as name, value pairs; written sessions as id, event count pairs; conflict records;
--   error records (JSON). A written session counts as migrated (with its events) only when it is new to the
--   task's written set (SCAN may return a key twice; a resumed run may rewrite what its first run recorded).
-- Returns the task's status after the batch ('cancelling' asks the runner to stop).
local pos = 3

local function group()
  local n = tonumber(ARGV[pos])
  local first = pos + 1
  pos = first + n
  return first, n
end

local function push(command, key, first, n)
  local last = first + n - 1
  for start = first, last, 1000 do
    redis.call(command, key, unpack(ARGV, start, math.min(start + 999, last)))
  end
end

local first, n = group()
for i = first, first + n - 1, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'cursor', ARGV[2])
first, n = group()
local migrated, events, again = 0, 0, 0
for i = first, first + n - 1, 2 do
  if redis.call('SADD', KEYS[5], ARGV[i]) == 1 then
    migrated = migrated + 1
    events = events + tonumber(ARGV[i + 1])
  else
    again = again + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'migrated', migrated)
redis.call('HINCRBY', KEYS[1], 'events', events)
if again > 0 then
  redis.call('HINCRBY', KEYS[1], 'processed', -again)  -- already counted when first written
end
first, n = group()
push('RPUSH', KEYS[3], first, n)
first, n = group()
push('RPUSH', KEYS[4], first, n)
for k = 1, 5 do
  redis.call('EXPIRE', KEYS[k], ARGV[1])
end
return redis.call('HGET', KEYS[1], 'status')
