-- Loyalty-fraud guards shared by the commit and return scripts (prepended after customer_keys.lua):
-- the per-day offer uses hash and the velocity counters, all in her slot. p.guards (JSON object):
--   day - today ("YYYYMMDD", UTC, the server's clock); oldest_day - uses of days before it are pruned
--   day_limit - uses per offer per day of offers whose reward is fixed per basket (0 = off); day_ttl_s
--   audit_target - her salted hash, the target of a velocity alert; now_iso - when, for the alert
--   store_id - the purchase's store (commits)
--   thresholds: commits, stores, returns (0 = off); windows: commits_window_s, stores_window_s, returns_window_s
--   bucket - the window bucket a counter key belongs to, per kind: commits_bucket, stores_bucket, returns_bucket
local g = p.guards

-- The uses of `offer_id` on `day` (field "<offer id>@<day>" of the day uses hash).
local function day_uses(uses_key, offer_id, day)
  return tonumber(redis.call("HGET", uses_key, offer_id .. "@" .. day)) or 0
end

-- Counts today's uses of the offers; prunes days before oldest_day so the hash stays a couple of days small.
local function count_day_uses(uses_key, offer_ids)
  if #offer_ids == 0 then
    return
  end
  for _, offer_id in ipairs(offer_ids) do
    redis.call("HINCRBY", uses_key, offer_id .. "@" .. g.day, 1)
  end
  for _, field in ipairs(redis.call("HKEYS", uses_key)) do
    local day = string.match(field, "@(%d+)$")
    if day and day < g.oldest_day then
      redis.call("HDEL", uses_key, field)
    end
  end
  redis.call("EXPIRE", uses_key, g.day_ttl_s)
end

-- Gives back a day's use of each offer (a return that took the offer's bonus back), never below zero.
local function give_back_day_uses(uses_key, offer_ids, day)
  for _, offer_id in ipairs(offer_ids) do
    if day_uses(uses_key, offer_id, day) > 0 then
      redis.call("HINCRBY", uses_key, offer_id .. "@" .. day, -1)
    end
  end
end

-- When a velocity count first reaches its threshold in a window: an audit record in her partition's outbox
-- (the writer puts it in the audit table, once: its event id names the window), and the kind for the metric.
local alerts = {}
local function velocity(kind, count, threshold, window_s, bucket)
  if threshold <= 0 or count ~= threshold then
    return
  end
  alerts[#alerts + 1] = kind
  local record = cjson.encode({
    kind = "audit",
    event_id = "velocity:" .. kind .. ":" .. g.audit_target .. ":" .. bucket,
    occurred_at = g.now_iso,
    action = "velocity." .. kind,
    target = g.audit_target,
    outcome = "ALERT",
    detail = cjson.encode({threshold = threshold, window_s = window_s}),
    count = 1,
  })
  redis.call("XADD", outbox_key, "*", "r", record)
end

-- Adds one to a window's counter (a string key that expires with its window) and checks the threshold.
local function count_velocity(kind, key, threshold, window_s, bucket)
  if threshold <= 0 then
    return
  end
  local n = redis.call("INCR", key)
  if n == 1 then
    redis.call("EXPIRE", key, window_s)
  end
  velocity(kind, n, threshold, window_s, bucket)
end

-- Adds the store to the window's set of her stores and checks the threshold on a store new to the window.
local function count_store(key)
  if g.stores <= 0 or redis.call("SADD", key, g.store_id) == 0 then
    return
  end
  redis.call("EXPIRE", key, g.stores_window_s)
  velocity("stores", redis.call("SCARD", key), g.stores, g.stores_window_s, g.stores_bucket)
end
