-- Takes the spendable points of a customer who has not bought since before the cutoff: once per period of
-- inactivity. Points still pending (a returns window longer than the inactivity period) are left to her.
-- KEYS - her keys (customer_keys.lua)
-- ARGV[1] - parameters (JSON object):
--   customer_id; cutoff_ms; last_purchase_ms - the last purchase time the caller saw
--   expected_version - the profile version the caller saw; entry_id - of the "expire" ledger entry; now_ms
--   ledger_keep - store/redis_limits.py
-- ARGV[2] - outbox record (JSON) without the points: the script adds them beside it ("points")
-- Returns the points taken: 0 when she bought since, has nothing left, or Redis does not hold her (-1).
local record = ARGV[2]

local profile = redis.call("HMGET", profile_key, "bal", "last", "ver")
if not profile[1] then
  return -1
end
local balance, last = tonumber(profile[1]) or 0, tonumber(profile[2]) or 0
if last == 0 or last >= p.cutoff_ms or last ~= p.last_purchase_ms or profile[3] ~= p.expected_version
    or balance <= 0 then
  return 0
end
local taken = spendable_points(balance, p.now_ms)
if taken <= 0 then
  return 0
end
redis.call("HINCRBY", profile_key, "bal", -taken)
ledger_append({cjson.encode({id = p.entry_id, k = "expire", p = -taken, t = p.now_ms})}, p.now_ms)
redis.call("HINCRBY", profile_key, "ver", 1)
outbox_append(record, "points", taken)
return taken
