-- Gives back a reservation whose commit did not happen (replay, refusal, lost race).
-- KEYS[1] - the offer's redemption counter
-- Returns the new count (never below zero).
local used = tonumber(redis.call("GET", KEYS[1]) or "0")
if used <= 0 then
  return 0
end
return redis.call("DECR", KEYS[1])
