-- Prepended after customer_keys.lua to every script that moves points (see store/scripts.py): her ledger
-- in Redis. The newest p.ledger_keep entries are kept in her ledger list; what falls off is summed into the
-- profile's "lbase", so that lbase + the sum of the list always equals bal - debt (SQL keeps every entry).
-- Entries with an "a" (epoch ms) are not spendable before then: their points are also summed per "a" in her
-- pending hash while "a" is in the future, so trimming the list never makes points spendable early.

-- Sum of the points not yet spendable at `now`; drops the fields that have become spendable.
local function pending_points(now)
  local fields = redis.call("HGETALL", pending_key)
  local sum = 0
  for i = 1, #fields, 2 do
    if tonumber(fields[i]) <= now then
      redis.call("HDEL", pending_key, fields[i])
    else
      sum = sum + tonumber(fields[i + 1])
    end
  end
  return sum
end

-- Points she can spend now: the balance minus what the not-yet-spendable entries add up to, never below 0.
-- Mirrors domain/pending.py.
local function spendable_points(balance, now)
  local pending = pending_points(now)
  if pending < 0 then
    pending = 0
  end
  if balance < pending then
    return 0
  end
  return balance - pending
end

-- Appends entries (JSON strings, oldest first) to her ledger; `now` (epoch ms) tells which are still pending.
local function ledger_append(entries, now)
  if #entries == 0 then
    return
  end
  for _, raw in ipairs(entries) do
    local e = cjson.decode(raw)
    local at = tonumber(e["a"]) or 0
    if at > now then
      if tonumber(redis.call("HINCRBY", pending_key, tostring(at), e["p"])) == 0 then
        redis.call("HDEL", pending_key, tostring(at))
      end
      -- The hash may go once its last field is spendable: the newest "a" sets its lifetime.
      if redis.call("PTTL", pending_key) < at - now then
        redis.call("PEXPIRE", pending_key, at - now + 1000)
      end
    end
  end
  redis.call("RPUSH", ledger_key, unpack(entries))
  local extra = redis.call("LLEN", ledger_key) - p.ledger_keep
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
