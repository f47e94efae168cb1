-- Takes one redemption from an offer's total budget, if any is left.
-- KEYS[1] - the offer's redemption counter   ARGV[1] - the offer's total_redemption_limit
-- Returns the new count, or -1 when the budget is used up (nothing changed).
local used = tonumber(redis.call("GET", KEYS[1]) or "0")
if used >= tonumber(ARGV[1]) then
  return -1
end
return redis.call("INCR", KEYS[1])
