-- Releases a transaction-id claim, only if it is still the one this call made.
-- KEYS[1] - claim string   ARGV[1] - the value this call set
-- Returns 1 when released.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
