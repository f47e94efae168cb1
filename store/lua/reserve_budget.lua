-- Takes one redemption from an offer's total budget, if any is left.
-- KEYS[1] - the offer's redemption counter   ARGV[1] - the offer's total_redemption_limit
-- Returns the new count, -1 when the budget is used up, or -2 when the counter does not exist (nothing changed
-- either way). The counter is created when the offer is (admin) or rebuilt from SQL; a missing one was lost
-- (a Redis restart without persistence, a flush, a failover) and must never count again from zero.
local raw = redis.call("GET", KEYS[1])
if not raw then
  return -2
end
if tonumber(raw) >= tonumber(ARGV[1]) then
  return -1
end
return redis.call("INCR", KEYS[1])
