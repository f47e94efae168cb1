-- Prepended to every script that changes one customer (see store/scripts.py): her keys, named in the
-- order store/keys.py CustomerKeys.script_keys() passes them; a script's own keys of the call (a transaction's
-- hash ...) follow from KEYS[OWN_KEYS] on. ARGV[1] is the script's parameters, one JSON object decoded into `p`
-- (each script's header lists its fields); values that are not text (a receipt) come as ARGV of their own.
local profile_key = KEYS[1]             -- hash: the profile (store/redis_profile.py ProfileField)
local categories_key = KEYS[2]          -- set: the categories she has bought
local category_purchases_key = KEYS[3]  -- hash category -> her purchases of the last two days that included it
local offer_uses_key = KEYS[4]          -- hash offer id -> times she earned it
local ledger_key = KEYS[5]              -- list: her newest ledger entries (JSON each)
local pending_key = KEYS[6]             -- hash epoch ms -> points not spendable before then
local spend_key = KEYS[7]               -- hash "YYYYMM" -> her net spend of that UTC month
local outbox_key = KEYS[8]              -- stream: her partition's write-behind records
local unwritten_key = KEYS[9]           -- hash customer id -> her records in the outbox not yet in SQL
local OWN_KEYS = 10
local p = cjson.decode(ARGV[1])

-- Appends her write-behind record to the outbox, tagged with her id ("c"), with the script's own fields beside
-- it (name, value, ...), and counts it as unwritten until the writer removes it ("counted" tells the writer that
-- this entry was counted: entries of servers before the count were not). Returns the entry id.
local function outbox_append(record, ...)
  redis.call("HINCRBY", unwritten_key, p.customer_id, 1)
  return redis.call("XADD", outbox_key, "*", "r", record, "c", p.customer_id, "counted", "1", ...)
end
