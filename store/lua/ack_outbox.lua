-- Removes the entries a writer is done with from a partition's outbox: written to SQL (or found there already), or
-- unreadable and moved to the dead letters (with their id). Each entry leaves once, by whichever call finds it
-- still there; only that call takes it off its customer's unwritten count, so an entry delivered twice (claimed
-- from a writer thought dead) and removed by the other writer changes no count again. Entries without "counted"
-- (written by servers before the count) were never counted and are taken off nothing. A count reaching 0 is
-- deleted, and so is the whole hash once the stream is empty: no record of anyone is left to write then.
-- KEYS[1] - partition outbox stream   KEYS[2] - the partition's unwritten counts hash   KEYS[3] - dead letters stream
-- ARGV[1] - JSON object: group - the writers' consumer group; written - entry ids; dead - entry ids
-- Returns {entries removed as written, entries moved to the dead letters}
local outbox_key, unwritten_key, dead_key = KEYS[1], KEYS[2], KEYS[3]
local p = cjson.decode(ARGV[1])

local function remove(id, to_dead)
  local entry = redis.call("XRANGE", outbox_key, id, id)[1]
  redis.call("XACK", outbox_key, p.group, id)
  if not entry then
    return 0  -- another writer removed it
  end
  redis.call("XDEL", outbox_key, id)
  local fields = entry[2]
  local customer_id, counted = nil, false
  for i = 1, #fields, 2 do
    if fields[i] == "c" then
      customer_id = fields[i + 1]
    elseif fields[i] == "counted" then
      counted = true
    end
  end
  if to_dead then
    fields[#fields + 1] = "id"
    fields[#fields + 1] = id
    redis.call("XADD", dead_key, "*", unpack(fields))
  end
  if counted and customer_id and tonumber(redis.call("HINCRBY", unwritten_key, customer_id, -1)) <= 0 then
    redis.call("HDEL", unwritten_key, customer_id)
  end
  return 1
end

local written, dead = 0, 0
for _, id in ipairs(p.written) do
  written = written + remove(id, false)
end
for _, id in ipairs(p.dead) do
  dead = dead + remove(id, true)
end
if redis.call("XLEN", outbox_key) == 0 then
  redis.call("DEL", unwritten_key)
end
return {written, dead}
