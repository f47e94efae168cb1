-- Imports a customer (CRM): display fields are set, lifetime value is set and its change recorded as a delta in the
-- write-behind record. The balance is set only when the import creates her (an opening balance, one "adjust" ledger
-- entry, so SQL stays a sum of its ledger): an existing member's points move only by purchases, returns, expiry and
-- AdjustPoints, so an import that names another balance than hers is refused, changing nothing.
-- KEYS - her keys (customer_keys.lua)
-- ARGV[1] - parameters (JSON object):
--   customer_id; display - profile fields (name, tier, cur, hlat, hlon, prop; string values, "" deletes one)
--   lifetime_value; points_balance; categories - added to her set
--   adjust_entry_id - the ledger entry id of a balance adjustment; now_ms
--   exists - true when she exists (the caller read or rebuilt her): a missing profile is then one Redis dropped
--     meanwhile (a lifetime ended, a restart), which must be rebuilt first, not created from scratch (its values
--     would reach SQL as deltas on top of what SQL already holds)
--   ledger_keep - store/redis_limits.py
-- ARGV[2] - outbox record (JSON) without deltas: the script adds them beside it ("ltv_delta", "balance_delta")
-- Returns {ltv_delta, balance_delta} | {"missing"} | {"balance", her current balance} (an existing member, another
-- balance sent: nothing changed)
local record = ARGV[2]

if p.exists and redis.call("EXISTS", profile_key) == 0 then
  return {"missing"}
end
local old = redis.call("HMGET", profile_key, "ltv", "bal")
if redis.call("EXISTS", profile_key) == 1 and (tonumber(old[2]) or 0) ~= p.points_balance then
  return {"balance", tostring(tonumber(old[2]) or 0)}
end
local ltv_delta = p.lifetime_value - (tonumber(old[1]) or 0)
local bal_delta = p.points_balance - (tonumber(old[2]) or 0)
for k, v in pairs(p.display) do
  if v == "" then
    redis.call("HDEL", profile_key, k)
  else
    redis.call("HSET", profile_key, k, v)
  end
end
redis.call("HSET", profile_key, "ltv", p.lifetime_value, "bal", p.points_balance)
redis.call("HSETNX", profile_key, "cnt", 0)
redis.call("HINCRBY", profile_key, "ver", 1)
for _, c in ipairs(p.categories) do
  redis.call("SADD", categories_key, c)
end
if bal_delta ~= 0 then
  ledger_append({cjson.encode({id = p.adjust_entry_id, k = "adjust", p = bal_delta, t = p.now_ms})}, p.now_ms)
end
outbox_append(record, "ltv_delta", ltv_delta, "balance_delta", bal_delta)
return {ltv_delta, bal_delta}
