"""Every setting is documented where operators look: a row of the README's settings table."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from server.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readme() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `POS_OFFERS_")]
    first_cells = [line.split("|")[1] for line in table]
    named = {name for cell in first_cells for name in re.findall(r"`(POS_OFFERS_\w+)`", cell)}
    assert {f"POS_OFFERS_{f.name.upper()}" for f in fields(Settings)} - named == set()
