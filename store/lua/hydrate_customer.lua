-- Rebuilds a customer's hot state from the SQL snapshot, unless another call already did, and only when none
-- of her changes is still waiting in the outbox (SQL would not have them yet: rebuilding then would forget them).
-- KEYS - her keys (customer_keys.lua), then KEYS[OWN_KEYS] - her erasure mark (erase_customer.lua), then
--   KEYS[OWN_KEYS + 1 ..] - hashes of hers restored with the profile (receipts, returned quantities, return receipts)
-- ARGV[1] - parameters (JSON object):
--   customer_id; fields - profile fields (string values); categories; offer_uses - offer id -> uses
--   ledger_entries - her newest ledger entries (JSON strings, oldest first)
--   keep_s - seconds to keep her if nothing else touches her (0 = for good): a member rebuilt only for a batch job
--     (expiry) leaves again, a purchase keeps her (commit_purchase PERSISTs)
--   restore - hashes to restore unless they exist, in ARGV order: {key = its index in KEYS (her spend, pending and
--     category purchase hashes among her keys, receipts and returns after them), ttl = seconds, count = fields}
-- ARGV[2 ..] - the restored hashes' field/value pairs (receipts are bytes), `count` pairs per hash in turn
-- Returns 1 when it wrote, 0 when the profile was already there, -1 when her changes are still in the outbox
-- (her unwritten count is above 0) or she is being forgotten (her erasure mark is set).
if redis.call("EXISTS", profile_key) == 1 then
  return 0
end
if (tonumber(redis.call("HGET", unwritten_key, p.customer_id)) or 0) > 0
    or redis.call("EXISTS", KEYS[OWN_KEYS]) == 1 then
  return -1
end
for k, v in pairs(p.fields) do
  redis.call("HSET", profile_key, k, v)
end
redis.call("DEL", categories_key, offer_uses_key)
for _, c in ipairs(p.categories) do
  redis.call("SADD", categories_key, c)
end
for offer_id, uses in pairs(p.offer_uses) do
  redis.call("HSET", offer_uses_key, offer_id, uses)
end
redis.call("DEL", ledger_key)
if #p.ledger_entries > 0 then
  redis.call("RPUSH", ledger_key, unpack(p.ledger_entries))
end
if p.keep_s > 0 then
  for _, key in ipairs({profile_key, categories_key, offer_uses_key, ledger_key}) do
    redis.call("EXPIRE", key, p.keep_s)
  end
end
local at = 2
for _, hash in ipairs(p.restore) do
  local key = KEYS[hash.key]
  if redis.call("EXISTS", key) == 0 and hash.count > 0 then
    for f = at, at + 2 * hash.count - 1, 2 do
      redis.call("HSET", key, ARGV[f], ARGV[f + 1])
    end
    redis.call("EXPIRE", key, hash.ttl)
  end
  at = at + 2 * hash.count
end
return 1
