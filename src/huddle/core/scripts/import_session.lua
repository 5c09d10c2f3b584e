-- import_session.lua: write a session read from another Redis onto this one, atomically, as a unit.
-- mode 'full': the whole session (meta, events, agents, checkpoints, idempotency keys, failure snapshots and
-- each key's remaining TTL) replaces the target's copy according to the conflict policy; a target session this
-- task did not write is first renamed to the task's backup keys (same slot) so rollback can restore it.
-- mode 'delta': append the events after the target's last seq (skipping those it has: idempotent), then bring
-- meta, agents, checkpoints, failure snapshots, trimming and TTLs in line with the source (cross-instance sync).
-- KEYS[1..6] the target session keys (see common.lua)  KEYS[7] migration marker (hash task -> outcome)
-- KEYS[8..13] the task's backup keys for this session (same order as KEYS[1..6])
-- ARGV[1] session id  ARGV[2] task id ('' = no marker, no backup)  ARGV[3] conflict policy: source-wins |
-- target-wins | newest-wins | merge | fail  ARGV[4] snapshot JSON  ARGV[5] marker/backup ttl ms
-- ARGV[6] back up an overwritten target session (1|0)  ARGV[7] mode: full | delta
-- ARGV[8] snapshot format: json (default) | dump  ARGV[9..14] (dump) DUMP payloads of KEYS[1..6] ('' = absent)
-- ARGV[15] (dump) '1': read the written session back and return its fingerprint (verify-on-write)
-- snapshot (json): {meta: [f,v,...], events: [[id, [f,v,...]], ...], agents: [...], cps: [[id, [...]]],
--            idem: [...], fail: [[id, [...]]], ttl: [pttl of KEYS[1..6] as strings], cpfirst: first cp id or ''}
-- snapshot (dump): {meta: [f,v,...], ttl: [...]}; the keys are written with RESTORE (full mode only; not for
--            'merge', which compares events). A payload this server cannot read fails before anything changed.
-- Returns {outcome, target seq, target ver, target updated, target state, target status, detail[, fingerprint
-- of the session as written (ARGV[15])]}; outcomes:
-- created | refreshed | replaced | merged | unchanged | kept | refused | diverged | synced | stale
local sid, task, policy, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local dumped = ARGV[8] == 'dump'
local snap = cjson.decode(ARGV[4])
if dumped and (mode ~= 'full' or policy == 'merge') then
  huddle_error('bad_snapshot', 'dump payloads are only for full copies without merge')
end
local marker_ttl, backup = tonumber(ARGV[5]), ARGV[6] == '1'
local K_MARK = KEYS[7]

local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then
      return flat[i + 1]
    end
  end
  return nil
end

local function hset_chunks(key, flat)
  for i = 1, #flat, 1000 do
    redis.call('HSET', key, unpack(flat, i, math.min(i + 999, #flat)))
  end
end

local function xadd_all(key, entries)
  for _, entry in ipairs(entries) do
    redis.call('XADD', key, entry[1], unpack(entry[2]))
  end
end

-- Stream ids compared numerically: 'ms-seq'.
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

local function id_gt(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am > bm or (am == bm and as > bs)
end

local function last_id(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last == 0 then
    return nil
  end
  return last[1][1]
end

local function apply_ttls()
  for i = 1, 6 do
    local ms = tonumber(snap.ttl[i])
    if ms ~= nil and ms > 0 and redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('PEXPIRE', KEYS[i], ms)
    end
  end
end

local t = redis.call('HMGET', K_META, 'seq', 'ver', 'updated', 'state', 'status', 'ctok')
local verify = dumped and ARGV[15] == '1'
local function reply(outcome, detail)
  local out = {outcome, t[1] or '', t[2] or '', t[3] or '', t[4] or '', t[5] or '', detail or ''}
  if verify and (outcome == 'created' or outcome == 'refreshed' or outcome == 'replaced') then
    out[8] = fingerprint_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  end
  return out
end
local s_seq, s_ver, s_upd = field(snap.meta, 'seq'), field(snap.meta, 'ver'), field(snap.meta, 'updated')
if s_seq == nil then
  huddle_error('bad_snapshot', sid)
end

local function mark(outcome)
  if task ~= '' then
    redis.call('HSET', K_MARK, task, outcome)
    redis.call('PEXPIRE', K_MARK, marker_ttl)
  end
end

-- RESTORE the source's payloads (events first: the largest and most format-sensitive). RESTORE checks a
-- payload before it replaces anything, so when the first one is refused (a newer RDB format than this
-- server's) nothing changed yet; 'moved' are the keys backup_target just renamed, put back in that case.
local function restore_all(moved)
  local first = true
  for _, i in ipairs({2, 1, 3, 4, 5, 6}) do
    local payload = ARGV[8 + i]
    if payload ~= '' then
      local ttl = tonumber(snap.ttl[i]) or 0
      if ttl < 0 then
        ttl = 0
      end
      local ok = redis.pcall('RESTORE', KEYS[i], ttl, payload, 'REPLACE')
      if type(ok) == 'table' and ok.err then
        if first then
          for _, item in ipairs(moved) do
            redis.call('RENAME', KEYS[7 + item[1]], KEYS[item[1]])
            if item[2] then
              redis.call('PERSIST', KEYS[item[1]])
            end
          end
          huddle_error('restore_refused', ok.err)
        end
        error(ok.err)
      end
      first = false
    end
  end
  for i = 1, 6 do
    if ARGV[8 + i] == '' then
      redis.call('DEL', KEYS[i])
    end
  end
end

-- older (merge): the target's events from before the source's first one (the source trimmed them), kept in
-- front of the source's log with their idempotency keys.
local function write_full(moved, older)
  if dumped then
    restore_all(moved or {})
    return
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  hset_chunks(K_META, snap.meta)
  if older ~= nil and #older > 0 then
    xadd_all(K_EVENTS, older)
    for _, entry in ipairs(older) do
      local token = field(entry[2], 'k')
      if token then
        redis.call('HSET', K_IDEM, token, string.sub(entry[1], 3))
      end
    end
    redis.call('HSET', K_META, 'first', string.sub(older[1][1], 3))
  end
  xadd_all(K_EVENTS, snap.events)
  if #snap.agents > 0 then
    hset_chunks(K_AGENTS, snap.agents)
  end
  xadd_all(K_CPS, snap.cps)
  if #snap.idem > 0 then
    hset_chunks(K_IDEM, snap.idem)
  end
  xadd_all(K_FAIL, snap.fail)
  apply_ttls()
end

local function backup_target()
  local moved = {}
  if not backup or task == '' then
    return moved
  end
  for i = 1, 6 do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('RENAME', KEYS[i], KEYS[7 + i])
      local persistent = redis.call('PTTL', KEYS[7 + i]) == -1
      moved[#moved + 1] = {i, persistent}
      if persistent then
        redis.call('PEXPIRE', KEYS[7 + i], marker_ttl)
      end
    end
  end
  return moved
end

-- merge: do both histories hold the same events on the seqs they have in common?
local function common_prefix_agrees()
  if #snap.events == 0 then
    return false, 'source has no events'
  end
  local s_first = tonumber(string.sub(snap.events[1][1], 3))
  local s_last = tonumber(string.sub(snap.events[#snap.events][1], 3))
  local t_first_entry = redis.call('XRANGE', K_EVENTS, '-', '+', 'COUNT', 1)
  if #t_first_entry == 0 then
    return false, 'target has no events'
  end
  local lo = math.max(s_first, tonumber(string.sub(t_first_entry[1][1], 3)))
  local hi = math.min(s_last, tonumber(t[1]))
  if lo > hi then
    return false, 'no common events'
  end
  local theirs = redis.call('XRANGE', K_EVENTS, '0-' .. fmt(lo), '0-' .. fmt(hi))
  if #theirs ~= hi - lo + 1 then
    return false, 'target log has gaps in ' .. fmt(lo) .. '..' .. fmt(hi)
  end
  for i, entry in ipairs(theirs) do
    local seq = lo + i - 1
    local mine = snap.events[seq - s_first + 1]
    if mine[1] ~= entry[1] or #mine[2] ~= #entry[2] then
      return false, 'seq ' .. fmt(seq)
    end
    for j = 1, #entry[2] do
      if mine[2][j] ~= entry[2][j] then
        return false, 'seq ' .. fmt(seq)
      end
    end
  end
  return true, ''
end

if mode == 'delta' then
  if not t[1] then
    huddle_error('sync_missing', sid)
  end
  local tseq, sseq = tonumber(t[1]), tonumber(s_seq)
  if sseq < tseq then
    return reply('stale')
  end
  -- Validate before the first write: the events after the target's seq must follow it without a gap.
  local expect, new = tseq + 1, {}
  for _, entry in ipairs(snap.events) do
    local seq = tonumber(string.sub(entry[1], 3))
    if seq > tseq then
      if seq ~= expect then
        huddle_error('sync_gap', fmt(tseq))
      end
      expect = expect + 1
      new[#new + 1] = entry
    end
  end
  if expect - 1 ~= sseq then
    huddle_error('sync_gap', fmt(tseq))
  end
  for _, entry in ipairs(new) do
    redis.call('XADD', K_EVENTS, entry[1], unpack(entry[2]))
    local token = field(entry[2], 'k')
    if token then
      redis.call('HSET', K_IDEM, token, string.sub(entry[1], 3))
    end
  end
  redis.call('DEL', K_META)
  hset_chunks(K_META, snap.meta)
  redis.call('DEL', K_AGENTS)
  if #snap.agents > 0 then
    hset_chunks(K_AGENTS, snap.agents)
  end
  local cp_last = last_id(K_CPS)
  for _, entry in ipairs(snap.cps) do
    if cp_last == nil or id_gt(entry[1], cp_last) then
      redis.call('XADD', K_CPS, entry[1], unpack(entry[2]))
    end
  end
  if snap.cpfirst ~= '' then
    redis.call('XTRIM', K_CPS, 'MINID', snap.cpfirst)
  end
  local fail_last = last_id(K_FAIL)
  for _, entry in ipairs(snap.fail) do
    if fail_last == nil or id_gt(entry[1], fail_last) then
      redis.call('XADD', K_FAIL, entry[1], unpack(entry[2]))
    end
  end
  -- Trim like the source did, dropping the idempotency keys of trimmed events (as trim_log does).
  local first = tonumber(field(snap.meta, 'first') or '1')
  if first > 1 then
    local old = redis.call('XRANGE', K_EVENTS, '-', '(0-' .. fmt(first))
    for _, entry in ipairs(old) do
      local token = field(entry[2], 'k')
      if token then
        redis.call('HDEL', K_IDEM, token)
      end
    end
    if #old > 0 then
      redis.call('XTRIM', K_EVENTS, 'MINID', '0-' .. fmt(first))
    end
  end
  apply_ttls()
  return reply('synced', fmt(#new))
end

if not t[1] then
  write_full()
  mark('created')
  return reply('created')
end
if task ~= '' and redis.call('HEXISTS', K_MARK, task) == 1 then
  -- Written by this very task before (a resumed or repeated run): refresh it, keep the first backup.
  write_full()
  return reply('refreshed')
end
-- The same session at the same point: same seq, version and update time, and the same creation token (two
-- different sessions created under one id in the same millisecond would otherwise look alike).
if t[1] == s_seq and t[2] == s_ver and t[3] == s_upd and (t[6] or '') == (field(snap.meta, 'ctok') or '') then
  return reply('unchanged')
end
if policy == 'target-wins' then
  return reply('kept')
elseif policy == 'fail' then
  return reply('refused')
elseif policy == 'newest-wins' then
  local tseq, sseq = tonumber(t[1]), tonumber(s_seq)
  if not (sseq > tseq or (sseq == tseq and tonumber(s_upd) > tonumber(t[3]))) then
    return reply('kept')
  end
elseif policy == 'merge' then
  local agree, where = common_prefix_agrees()
  if not agree then
    return reply('diverged', where)
  end
  if tonumber(s_seq) <= tonumber(t[1]) then
    return reply('kept', 'target already holds every event')
  end
  -- The union by seq: the target's events older than the source's first (trimmed on the source) stay.
  local older = redis.call('XRANGE', K_EVENTS, '-', '(' .. snap.events[1][1])
  write_full(backup_target(), older)
  mark('merged')
  return reply('merged', #older > 0 and ('kept ' .. fmt(#older) .. ' older target events') or '')
elseif policy ~= 'source-wins' then
  huddle_error('bad_policy', policy)
end
write_full(backup_target())
mark('replaced')
return reply('replaced')
