-- Creates an offer's budget counter unless it exists (a new offer, or a rebuild of a lost one), with its epoch.
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch   ARGV[1] - redemptions used
-- Returns 1 when this call created it, 0 when another did first (servers rebuilding at once agree on one value).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local now = redis.call("TIME")
redis.call("SET", KEYS[1], ARGV[1])
redis.call("SET", KEYS[2], now[1] .. string.format("%06d", tonumber(now[2])))  -- microseconds: never reused
return 1
