-- Imports a customer (CRM): display fields are set, balance and lifetime value are set and their changes
-- recorded as deltas in the write-behind record, so SQL stays a sum of its ledger.
-- KEYS[1] - profile hash   KEYS[2] - categories set   KEYS[3] - partition outbox stream   KEYS[4] - ledger list
-- ARGV[1] - display fields as JSON object (name, tier, cur, hlat, hlon, prop; string values)
-- ARGV[2] - lifetime value   ARGV[3] - points balance   ARGV[4] - categories JSON array (added to the set)
-- ARGV[5] - outbox record (JSON) without deltas   ARGV[6] - customer id (tags the outbox entry)
-- ARGV[7] - ledger entry id of a balance adjustment   ARGV[8] - now, epoch ms
-- ARGV[9] - "1" when she exists (the caller read or rebuilt her): a missing profile is then one Redis dropped
--           meanwhile (a lifetime ended, a restart), which must be rebuilt first, not created from scratch
--           (its values would reach SQL as deltas on top of what SQL already holds)
-- Returns {ltv_delta, balance_delta} | {"missing"}
if ARGV[9] == "1" and redis.call("EXISTS", KEYS[1]) == 0 then
  return {"missing"}
end
local old = redis.call("HMGET", KEYS[1], "ltv", "bal")
local ltv_delta = tonumber(ARGV[2]) - (tonumber(old[1]) or 0)
local bal_delta = tonumber(ARGV[3]) - (tonumber(old[2]) or 0)
for k, v in pairs(cjson.decode(ARGV[1])) do
  if v == "" then
    redis.call("HDEL", KEYS[1], k)
  else
    redis.call("HSET", KEYS[1], k, v)
  end
end
redis.call("HSET", KEYS[1], "ltv", ARGV[2], "bal", ARGV[3])
redis.call("HSETNX", KEYS[1], "cnt", 0)
redis.call("HINCRBY", KEYS[1], "ver", 1)
for _, c in ipairs(cjson.decode(ARGV[4])) do
  redis.call("SADD", KEYS[2], c)
end
if bal_delta ~= 0 then
  ledger_append(KEYS[1], KEYS[4], {cjson.encode({id = ARGV[7], k = "adjust", p = bal_delta, t = tonumber(ARGV[8])})})
end
redis.call("XADD", KEYS[3], "*", "r", ARGV[5], "ltv_delta", ltv_delta, "balance_delta", bal_delta, "c", ARGV[6])
return {ltv_delta, bal_delta}
