-- A commit that reserved under an epoch succeeded: if the counter was rebuilt since, the rebuild may have missed it
-- (it read the outbox before the commit landed), so it is counted again (at worst twice: undersell, not oversell).
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch   ARGV[1] - the reservation's epoch
-- Returns 1 when it counted the redemption again, 0 otherwise (same epoch, or lost again: the next rebuild counts it).
local raw = redis.call("GET", KEYS[1])
if not raw or (redis.call("GET", KEYS[2]) or "0") == ARGV[1] then
  return 0
end
redis.call("INCR", KEYS[1])
return 1
