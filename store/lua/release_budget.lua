-- Gives back a redemption: a reservation whose commit did not happen, or an offer a return took back whole.
-- KEYS[1] - the offer's redemption counter   KEYS[2] - the counter's epoch (Redis time, µs, it was created at)
-- ARGV[1] - a reservation's epoch ("" for a return): a counter rebuilt since never counted that reservation
-- ARGV[2] - a return: when its record was written (outbox entry time, ms; 0 otherwise): a counter rebuilt since
--           then already left that redemption out
-- Returns the new count; -1 when it is at zero already (it never goes below); -2 when the counter does not exist
-- (left missing: its rebuild counts only redemptions committed and not taken back); -3 when it was rebuilt after
-- the reservation or the return, so there is nothing to give back.
local counter_key, epoch_key = KEYS[1], KEYS[2]
local reserved_epoch, returned_at_ms = ARGV[1], tonumber(ARGV[2])

local raw = redis.call("GET", counter_key)
if not raw then
  return -2
end
local epoch = redis.call("GET", epoch_key) or "0"
if reserved_epoch ~= "" and reserved_epoch ~= epoch then
  return -3
end
if returned_at_ms > 0 and tonumber(epoch) >= returned_at_ms * 1000 then
  return -3
end
if tonumber(raw) <= 0 then
  return -1
end
return redis.call("DECR", counter_key)
