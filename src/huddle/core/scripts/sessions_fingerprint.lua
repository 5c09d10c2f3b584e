-- sessions_fingerprint.lua: fingerprints of several sessions (fingerprint_keys in common.lua), read-only.
-- One call per batch on a standalone server; on a cluster, callers group sessions by hash slot.
-- KEYS: six session keys per session (see common.lua), session after session
-- Returns one string per session: '' when it does not exist, else its fingerprint
local out = {}
for base = 0, #KEYS - 6, 6 do
  out[#out + 1] = fingerprint_keys(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4],
    KEYS[base + 5], KEYS[base + 6])
end
return out
