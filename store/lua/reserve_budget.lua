-- Takes one redemption from an offer's total budget, if any is left.
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch (Redis time, µs, it was created at)
-- ARGV[1] - the offer's total_redemption_limit
-- Returns {new count, epoch}, {-1, epoch} when the budget is used up, or {-2, ""} when the counter does not exist
-- (nothing changed either way). The counter is created when the offer is (admin) or rebuilt from SQL; a missing
-- one was lost (a Redis restart without persistence, a flush, a failover) and must never count again from zero.
-- The epoch tells the caller's later release or confirmation whether the counter was rebuilt meanwhile.
local counter_key, epoch_key = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])

local raw = redis.call("GET", counter_key)
if not raw then
  return {-2, ""}
end
local epoch = redis.call("GET", epoch_key) or "0"
if tonumber(raw) >= limit then
  return {-1, epoch}
end
return {redis.call("INCR", counter_key), epoch}
