-- Starts forgetting a customer (ForgetCustomer): drops her hot state and marks her as being erased, so no call
-- rebuilds her from SQL while her rows there are re-keyed; refused while records of hers wait in the outbox (SQL
-- does not have them yet: erasing now would let them recreate her there afterwards).
-- KEYS - her keys (customer_keys.lua), then KEYS[OWN_KEYS] - her erasure mark (hydrate_customer.lua checks it),
--   then the fraud guards' keys of hers (per-day offer uses, velocity counters), all dropped with her state
-- ARGV[1] - parameters (JSON object): customer_id; mark_s - how long the mark holds at most (a failed erasure
--   then lets her be rebuilt again)
-- Returns 1 when her state is gone and the mark set, 0 when her unwritten count is above 0 (nothing changed).
local erasing_key = KEYS[OWN_KEYS]

if (tonumber(redis.call("HGET", unwritten_key, p.customer_id)) or 0) > 0 then
  return 0
end
redis.call("DEL", profile_key, categories_key, category_purchases_key, offer_uses_key, ledger_key, pending_key,
  spend_key)
for i = OWN_KEYS + 1, #KEYS do
  redis.call("DEL", KEYS[i])
end
redis.call("SET", erasing_key, "1", "EX", p.mark_s)
return 1
