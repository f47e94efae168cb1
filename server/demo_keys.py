"""Demo API keys for a first run: one per role, written to DATA_DIR/demo-credentials.json (mode 0600).

Kept across restarts of `make run` while they still work; made anew when the file is missing or its keys were
revoked. Never used outside demo mode: production keys are made with `pos-offers-server keys create`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from domain.access import Role
from domain.errors import Unauthenticated
from server.demo import STORE_ID
from usecases.api_keys import ApiKeys, KeyRing

FILE_NAME = "demo-credentials.json"


def _still_valid(path: Path, ring: KeyRing) -> bool:
    try:
        saved = json.loads(path.read_text())
        for role in Role:
            ring.authenticate(saved[role.value]["secret"])
    except (OSError, ValueError, KeyError, TypeError, Unauthenticated):
        return False
    return True


def write_private(path: Path, text: str) -> None:
    """`text` to `path`, readable by this user only, also when the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


async def ensure_demo_keys(api_keys: ApiKeys, ring: KeyRing, data_dir: Path) -> Path:
    path = data_dir / FILE_NAME
    if _still_valid(path, ring):
        return path
    credentials: dict[str, dict[str, object]] = {}
    for role, stores in ((Role.ADMIN, ()), (Role.POS, (STORE_ID,)), (Role.APP, ())):
        key, secret = await api_keys.create(name=f"demo {role.value}", role=role, store_ids=stores)
        credentials[role.value] = {"key_id": key.key_id, "secret": secret, "store_ids": sorted(key.store_ids)}
    write_private(path, json.dumps(credentials, indent=2) + "\n")
    return path
