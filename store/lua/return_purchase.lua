-- Applies one return (or void) of a committed purchase, exactly once per return id of the purchase, with its
-- write-behind record.
-- Everything is validated before the first write: Redis does not roll back a script that fails half-way.
-- KEYS - her keys (customer_keys.lua), then KEYS[OWN_KEYS] - the purchase's returned-quantities hash,
--   KEYS[OWN_KEYS + 1] - the return's hash {digest, receipt}, KEYS[OWN_KEYS + 2] - the purchase's transaction hash
--   (its "uday"), KEYS[OWN_KEYS + 3] - her day uses hash, KEYS[OWN_KEYS + 4] - her returns counter of this window
-- ARGV[1] - parameters (JSON object):
--   customer_id; digest - of the request; expected_version - the profile version the return was computed on
--   balance_delta; debt_delta (>= 0); lifetime_value_delta (<= 0) - also the spend taken off the purchase's month
--   purchase_count_delta - -1 for a void; month - of the purchase ("YYYYMM")
--   returned_after - line id -> cumulative returned quantity; ledger_entries - JSON strings
--   offers_lost - offer ids whose per-customer use is given back
--   void_categories - a void: the purchase's categories (each once), else empty
--   added_categories - the categories the purchase added to her profile: a void takes each back unless another
--     recent purchase bought it too; those taken back go to the outbox entry's "cats_removed"
--   guards - guards_lib.lua; now_ms; retention_s - of the receipt and returned quantities; ledger_keep - store/redis_limits.py
-- ARGV[2] - outbox record (JSON, without the receipt)
-- ARGV[3] - receipt (protobuf): stored, and added beside the record ("receipt")
-- Returns {"ok", outbox entry id, velocity alert kinds...} | {"replay", receipt} | {"digest_mismatch"} | {"missing"} | {"stale"}
local returned_key, return_key = KEYS[OWN_KEYS], KEYS[OWN_KEYS + 1]
local purchase_key, uses_day_key, returns_key = KEYS[OWN_KEYS + 2], KEYS[OWN_KEYS + 3], KEYS[OWN_KEYS + 4]
local record, receipt = ARGV[2], ARGV[3]

local done = redis.call("HMGET", return_key, "digest", "receipt")
if done[1] then
  if done[1] == p.digest then
    return {"replay", done[2]}
  end
  return {"digest_mismatch"}
end
local profile = redis.call("HMGET", profile_key, "ver", "bal")
if not profile[1] then
  return {"missing"}
end
if profile[1] ~= p.expected_version or (tonumber(profile[2]) or 0) + p.balance_delta < 0 then
  return {"stale"}
end

redis.call("HINCRBY", profile_key, "bal", p.balance_delta)
redis.call("HINCRBY", profile_key, "debt", p.debt_delta)
redis.call("HINCRBY", profile_key, "ltv", p.lifetime_value_delta)
redis.call("HINCRBY", profile_key, "cnt", p.purchase_count_delta)
redis.call("HINCRBY", profile_key, "ver", 1)
if redis.call("EXISTS", spend_key) == 1 then
  redis.call("HINCRBY", spend_key, p.month, p.lifetime_value_delta)
end
for line_id, quantity in pairs(p.returned_after) do
  redis.call("HSET", returned_key, line_id, quantity)
end
redis.call("EXPIRE", returned_key, p.retention_s)
local added = {}
for _, category in ipairs(p.added_categories) do
  added[category] = true
end
local removed = {}
for _, category in ipairs(p.void_categories) do
  if tonumber(redis.call("HINCRBY", category_purchases_key, category, -1)) <= 0 then
    redis.call("HDEL", category_purchases_key, category)
    if added[category] and redis.call("SREM", categories_key, category) == 1 then
      removed[#removed + 1] = category
    end
  end
end
ledger_append(p.ledger_entries, p.now_ms)
for _, offer_id in ipairs(p.offers_lost) do
  if tonumber(redis.call("HINCRBY", offer_uses_key, offer_id, -1)) <= 0 then
    redis.call("HDEL", offer_uses_key, offer_id)
  end
end
local purchase_day = redis.call("HGET", purchase_key, "uday")
if purchase_day then
  give_back_day_uses(uses_day_key, p.offers_lost, purchase_day)
end
redis.call("HSET", return_key, "digest", p.digest, "receipt", receipt)
redis.call("EXPIRE", return_key, p.retention_s)
local entry
if #removed > 0 then
  entry = outbox_append(record, "receipt", receipt, "cats_removed", cjson.encode(removed))
else
  entry = outbox_append(record, "receipt", receipt)
end
count_velocity("returns", returns_key, g.returns, g.returns_window_s, g.returns_bucket)
return {"ok", entry, unpack(alerts)}
