-- Applies one manual points adjustment (AdjustPoints) to a customer, exactly once per adjustment id, with its
-- write-behind record. A positive adjustment repays points debt first (as earnings do), the rest reaches the
-- balance; a negative one takes from the spendable balance only and never creates debt. Everything is checked
-- before the first write: Redis does not roll back a script that fails half-way.
-- KEYS - her keys (customer_keys.lua), then KEYS[OWN_KEYS] - the adjustment's hash {digest, result}
-- ARGV[1] - parameters (JSON object):
--   customer_id; digest - of the request; points - signed, non-zero; entry_id - of the "adjustment" ledger entry
--   now_ms - the adjustment's time; retention_s - of the adjustment's hash; ledger_keep - store/redis_limits.py
-- ARGV[2] - outbox record (JSON) without the outcome: the script adds it beside the record ("result")
-- Returns {"ok", result} | {"replay", result} | {"digest_mismatch"} | {"missing"} | {"insufficient", spendable}
--   result - JSON {balance_before, balance_after, debt_before, debt_after, at_ms}
local adjustment_key = KEYS[OWN_KEYS]
local record = ARGV[2]

local done = redis.call("HMGET", adjustment_key, "digest", "result")
if done[1] then
  if done[1] == p.digest then
    return {"replay", done[2]}
  end
  return {"digest_mismatch"}
end
local profile = redis.call("HMGET", profile_key, "ver", "bal", "debt")
if not profile[1] then
  return {"missing"}
end
local balance, debt = tonumber(profile[2]) or 0, tonumber(profile[3]) or 0
local repaid = 0
if p.points > 0 then
  repaid = math.min(debt, p.points)
else
  local spendable = spendable_points(balance, p.now_ms)
  if spendable + p.points < 0 then
    return {"insufficient", tostring(spendable)}
  end
end

-- An adjusted member is one Redis keeps for good (a batch job may have rebuilt her for a while only).
redis.call("PERSIST", profile_key)
redis.call("PERSIST", categories_key)
redis.call("PERSIST", offer_uses_key)
redis.call("PERSIST", ledger_key)
redis.call("HINCRBY", profile_key, "bal", p.points - repaid)
if repaid > 0 then
  redis.call("HINCRBY", profile_key, "debt", -repaid)
end
redis.call("HINCRBY", profile_key, "ver", 1)
ledger_append({cjson.encode({id = p.entry_id, k = "adjustment", p = p.points, t = p.now_ms})}, p.now_ms)
-- Formatted by hand: cjson writes large numbers in exponent notation.
local result = string.format(
  '{"balance_before":%d,"balance_after":%d,"debt_before":%d,"debt_after":%d,"at_ms":%d}',
  balance, balance + p.points - repaid, debt, debt - repaid, p.now_ms)
redis.call("HSET", adjustment_key, "digest", p.digest, "result", result)
redis.call("EXPIRE", adjustment_key, p.retention_s)
outbox_append(record, "result", result)
return {"ok", result}
