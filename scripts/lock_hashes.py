"""`python -m scripts.lock_hashes`: rewrites requirements.lock with the sha256 of every pinned file, so `make install`
installs with `--require-hashes` and a tampered package cannot install.

Run after changing the pins (`.venv/bin/pip freeze --exclude-editable` gives them): it downloads the file pip would
install on this machine for each pin and records its hash.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LOCK = Path("requirements.lock")
HEADER = (
    "# Every package the venv holds, pinned, with the hash of the file installed on this kind of machine;\n"
    "# regenerate with: make lock (after changing a pin)"
)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> list[str]:
    """name==version lines of a lock, with or without hashes."""
    return [line.split()[0] for line in text.splitlines() if "==" in line and not line.startswith(("#", " "))]


def _hashes(directory: Path) -> dict[tuple[str, str], str]:
    found = {}
    for path in directory.iterdir():
        if path.name.endswith(".whl"):
            dist, version = path.name.split("-")[:2]
        else:
            dist, version = path.name.removesuffix(".tar.gz").removesuffix(".zip").rsplit("-", 1)
        found[(_normalized(dist), version)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def main() -> int:
    pins = _pins(LOCK.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, *pins], check=True
        )
        hashes = _hashes(Path(tmp))
    lines = [HEADER]
    for pin in pins:
        name, version = pin.split("==")
        lines.append(f"{pin} \\\n    --hash=sha256:{hashes[(_normalized(name), version)]}")
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"lock_hashes: {len(pins)} pins hashed into {LOCK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
