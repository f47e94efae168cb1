-- Applies one purchase to a customer's hot state, exactly once, and appends its write-behind record.
-- Everything is validated before the first write: Redis does not roll back a script that fails half-way.
-- KEYS - her keys (customer_keys.lua), then KEYS[OWN_KEYS] - the purchase's hash {digest, receipt, uday}, one per
--   store and transaction id (store/keys.py CustomerKeys.transaction), KEYS[OWN_KEYS + 1] - her day uses hash,
--   KEYS[OWN_KEYS + 2] - her commits counter of this window, KEYS[OWN_KEYS + 3] - her set of stores of this window
--   (guards_lib.lua)
-- ARGV[1] - parameters (JSON object):
--   customer_id; digest - of the request; expected_version - the profile version the purchase was evaluated on
--   balance_delta - earned - redeemed - debt repaid; points_redeemed; debt_repaid - points debt repaid from its
--   earnings; lifetime_value_delta - also the net spend added to the sale's month; purchased_at_ms;
--   month - of the sale ("YYYYMM"); tier_after - the tier this purchase reached ("" = unchanged)
--   new_categories - for her profile; basket_categories - each once, counted for a void of this purchase
--   ledger_entries - JSON strings; offers_applied - offer ids
--   now_ms - what is spendable is judged by the server's clock, not the sale's time
--   retention_s - of the receipt; ledger_keep, spend_retention_s, category_window_s - store/redis_limits.py
--   day_limited - the offers applied whose uses per day are limited (guards_lib.lua); guards - guards_lib.lua
-- ARGV[2] - outbox record (JSON, without the receipt)
-- ARGV[3] - receipt (protobuf): stored, and added beside the record ("receipt")
-- Returns {"ok", velocity alert kinds...} | {"replay", receipt} | {"digest_mismatch"} | {"missing"} | {"stale"}
--   | {"insufficient", spendable points}
local transaction_key = KEYS[OWN_KEYS]
local uses_day_key, commits_key, stores_key = KEYS[OWN_KEYS + 1], KEYS[OWN_KEYS + 2], KEYS[OWN_KEYS + 3]
local record, receipt = ARGV[2], ARGV[3]

local txn = redis.call("HMGET", transaction_key, "digest", "receipt")
if txn[1] then
  if txn[1] == p.digest then
    return {"replay", txn[2]}
  end
  return {"digest_mismatch"}
end
local profile = redis.call("HMGET", profile_key, "ver", "bal", "last", "debt")
if not profile[1] then
  return {"missing"}
end
if profile[1] ~= p.expected_version then
  return {"stale"}
end
local balance = tonumber(profile[2]) or 0
if p.points_redeemed > 0 then
  local spendable = spendable_points(balance, p.now_ms)
  if spendable < p.points_redeemed then
    return {"insufficient", tostring(spendable)}
  end
end
if balance + p.balance_delta < 0 then
  return {"insufficient", tostring(balance)}
end
if (tonumber(profile[4]) or 0) < p.debt_repaid then
  return {"stale"}
end
if g.day_limit > 0 then
  for _, offer_id in ipairs(p.day_limited) do
    if day_uses(uses_day_key, offer_id, g.day) >= g.day_limit then
      return {"stale"}  -- another of her commits used it today meanwhile: the re-read evaluates without it
    end
  end
end

-- A purchase makes her a member Redis keeps for good (a batch job may have rebuilt her for a while only).
redis.call("PERSIST", profile_key)
redis.call("PERSIST", categories_key)
redis.call("PERSIST", offer_uses_key)
redis.call("PERSIST", ledger_key)
redis.call("HINCRBY", profile_key, "bal", p.balance_delta)
redis.call("HINCRBY", profile_key, "ltv", p.lifetime_value_delta)
redis.call("HINCRBY", profile_key, "cnt", 1)
redis.call("HINCRBY", profile_key, "ver", 1)
if p.debt_repaid > 0 then
  redis.call("HINCRBY", profile_key, "debt", -p.debt_repaid)
end
if (tonumber(profile[3]) or 0) < p.purchased_at_ms then
  redis.call("HSET", profile_key, "last", p.purchased_at_ms)
end
redis.call("HINCRBY", spend_key, p.month, p.lifetime_value_delta)
redis.call("EXPIRE", spend_key, p.spend_retention_s)
if p.tier_after ~= "" then
  redis.call("HSET", profile_key, "tier", p.tier_after)
end
for _, category in ipairs(p.new_categories) do
  redis.call("SADD", categories_key, category)
end
for _, category in ipairs(p.basket_categories) do
  redis.call("HINCRBY", category_purchases_key, category, 1)
end
redis.call("EXPIRE", category_purchases_key, p.category_window_s)
ledger_append(p.ledger_entries, p.now_ms)
for _, offer_id in ipairs(p.offers_applied) do
  redis.call("HINCRBY", offer_uses_key, offer_id, 1)
end
redis.call("HSET", transaction_key, "digest", p.digest, "receipt", receipt)
if #p.day_limited > 0 then
  count_day_uses(uses_day_key, p.day_limited)
  redis.call("HSET", transaction_key, "uday", g.day)  -- a return gives the uses back to this day
end
redis.call("EXPIRE", transaction_key, p.retention_s)
outbox_append(record, "receipt", receipt)
count_velocity("commits", commits_key, g.commits, g.commits_window_s, g.commits_bucket)
count_store(stores_key)
return {"ok", unpack(alerts)}
