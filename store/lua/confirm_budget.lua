-- A commit that reserved under an epoch succeeded: if the counter was rebuilt since, the rebuild may have missed it
-- (it read the outbox before the commit landed), so it is counted again (at worst twice: undersell, not oversell).
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch   ARGV[1] - the reservation's epoch
-- Returns 1 when it counted the redemption again, 0 otherwise (same epoch, or lost again: the next rebuild counts it).
local counter_key, epoch_key = KEYS[1], KEYS[2]
local reserved_epoch = ARGV[1]

local raw = redis.call("GET", counter_key)
if not raw or (redis.call("GET", epoch_key) or "0") == reserved_epoch then
  return 0
end
redis.call("INCR", counter_key)
return 1
