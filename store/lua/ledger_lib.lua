-- Prepended to every script that moves points (see redis_state._lua): the customer's ledger in Redis.
-- The newest LEDGER_KEEP entries are kept in a list; what falls off is summed into the profile's "lbase", so
-- that lbase + the sum of the list always equals bal - debt (SQL keeps every entry).
local LEDGER_KEEP = 200
local function ledger_append(profile_key, ledger_key, entries)
  if #entries == 0 then
    return
  end
  redis.call("RPUSH", ledger_key, unpack(entries))
  local extra = redis.call("LLEN", ledger_key) - LEDGER_KEEP
  if extra > 0 then
    local dropped = redis.call("LRANGE", ledger_key, 0, extra - 1)
    local sum = 0
    for _, raw in ipairs(dropped) do
      sum = sum + cjson.decode(raw)["p"]
    end
    redis.call("LTRIM", ledger_key, extra, -1)
    redis.call("HINCRBY", profile_key, "lbase", sum)
  end
end
