"""requirements.lock pins every package the venv holds, each with the hash `make install` checks it against."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), read from the lock's `name==version \\ --hash=sha256:…` entries."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[^\s#])", LOCK.read_text()):
        if entry.startswith("#") or "==" not in entry:
            continue
        pin = entry.split()[0]
        name, version = pin.split("==")
        entries[_normalized(name)] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return entries


def test_every_pin_carries_a_hash() -> None:
    entries = _entries()
    assert len(entries) > 40
    unhashed = sorted(name for name, (_, hashes) in entries.items() if not hashes)
    assert unhashed == [], "pins without a hash fail `pip install --require-hashes`: run make lock"


def test_the_lock_pins_exactly_what_the_venv_holds() -> None:
    entries = _entries()
    installed = {
        _normalized(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if _normalized(dist.metadata["Name"]) not in {"pos-offers", "pip"}
    }
    assert {name: version for name, (version, _) in entries.items()} == installed
