-- Takes one call from every token bucket of a request (its API key's, and the customer's when it names one), or
-- from none: a call passes only when every bucket has a token, so a refused call costs no bucket anything.
-- KEYS[1] - the API key's bucket   KEYS[2] - the customer's bucket (absent when the request names no customer)
--   each a hash {m = milli-tokens left, t = the Redis time in ms they were counted at}; a missing bucket is full
-- ARGV[1] - parameters, one JSON object:
--   per_second - [calls per second of KEYS[i]] (positive integers)   burst - [calls KEYS[i] holds when full]
--   now_ms     - the time to count at (tests inject it); absent: Redis TIME
-- Returns {0, 0} when it took a token from every bucket; {i, retry_ms} when KEYS[i] had none and nothing was taken
-- (of several empty buckets, the one that refills last), retry_ms being how long until every bucket has a token.
-- Integer arithmetic: a call costs 1000 milli-tokens and a bucket refills `per_second` milli-tokens per ms, so
-- time in whole ms loses nothing (the truncated times' differences add up to the whole). A bucket expires when it
-- would be full again: a missing bucket and a full one are the same.
local p = cjson.decode(ARGV[1])
local COST = 1000

local now = p.now_ms
if not now then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local tokens, counted_at = {}, {}
local refused, retry_ms = 0, 0
for i, key in ipairs(KEYS) do
  local rate, capacity = p.per_second[i], p.burst[i] * COST
  local stored = redis.call("HMGET", key, "m", "t")
  tokens[i], counted_at[i] = capacity, now
  if stored[1] and stored[2] then
    local last = tonumber(stored[2])
    -- A clock that stepped back (a failover to a replica behind) refills nothing and never counts time twice.
    local elapsed = math.min(math.max(0, now - last), capacity)  -- `capacity` ms refill any bucket (rate >= 1)
    tokens[i] = math.min(capacity, tonumber(stored[1]) + elapsed * rate)
    counted_at[i] = math.max(now, last)
  end
  if tokens[i] < COST then
    local wait = math.ceil((COST - tokens[i]) / rate)
    if wait > retry_ms then
      refused, retry_ms = i, wait
    end
  end
end
if refused > 0 then
  return {refused, retry_ms}
end

for i, key in ipairs(KEYS) do
  local left = tokens[i] - COST
  local full_in_ms = math.ceil((p.burst[i] * COST - left) / p.per_second[i])
  redis.call("HSET", key, "m", string.format("%d", left), "t", string.format("%d", counted_at[i]))
  redis.call("PEXPIRE", key, string.format("%d", full_in_ms + 1))
end
return {0, 0}
