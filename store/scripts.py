"""The Lua scripts under store/lua, as the store and the writer register them (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

from importlib import resources

# Scripts cannot share functions: what they have in common is prepended to each. A customer's scripts start by
# naming her keys and decoding their parameters (customer_keys.lua); those that move points add her ledger.
_PRELUDES = {
    "commit_purchase.lua": ("customer_keys.lua", "ledger_lib.lua", "guards_lib.lua"),
    "return_purchase.lua": ("customer_keys.lua", "ledger_lib.lua", "guards_lib.lua"),
    "upsert_customer.lua": ("customer_keys.lua", "ledger_lib.lua"),
    "expire_points.lua": ("customer_keys.lua", "ledger_lib.lua"),
    "adjust_points.lua": ("customer_keys.lua", "ledger_lib.lua"),
    "hydrate_customer.lua": ("customer_keys.lua",),
    "erase_customer.lua": ("customer_keys.lua",),
}


def lua(name: str) -> str:
    """A script's source, its preludes first."""
    files = [*_PRELUDES.get(name, ()), name]
    return "\n".join(resources.files("store").joinpath("lua", f).read_text() for f in files)
