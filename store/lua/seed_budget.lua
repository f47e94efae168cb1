-- Creates an offer's budget counter unless it exists (a new offer, or a rebuild of a lost one), with its epoch.
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch   ARGV[1] - redemptions used
-- Returns 1 when this call created it, 0 when another did first (servers rebuilding at once agree on one value).
local counter_key, epoch_key = KEYS[1], KEYS[2]
local used = ARGV[1]

if redis.call("EXISTS", counter_key) == 1 then
  return 0
end
local now = redis.call("TIME")
redis.call("SET", counter_key, used)
redis.call("SET", epoch_key, now[1] .. string.format("%06d", tonumber(now[2])))  -- microseconds: never reused
return 1
