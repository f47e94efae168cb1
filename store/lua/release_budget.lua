-- Gives back a redemption: a reservation whose commit did not happen, or an offer a return took back whole.
-- KEYS[1] - the offer's redemption counter
-- Returns the new count, -1 when it is at zero already (it never goes below), or -2 when the counter does not
-- exist: it is left missing, since its rebuild from SQL counts only redemptions that were committed and not taken
-- back (creating it here would restart the budget from zero).
local raw = redis.call("GET", KEYS[1])
if not raw then
  return -2
end
if tonumber(raw) <= 0 then
  return -1
end
return redis.call("DECR", KEYS[1])
