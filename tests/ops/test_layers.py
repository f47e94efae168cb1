"""The layer contract (pyproject's [tool.importlinter]) holds, and would catch an import pointing outward."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("domain", "usecases", "store", "server", "client", "telemetry")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_use_case_importing_redis_and_a_pure_module_importing_an_adapter_are_refused(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "usecases" / "offers.py").open("a") as module:
        module.write("\nimport redis  # noqa: E402\n")
    with (tmp_path / "domain" / "money.py").open("a") as module:
        module.write("\nimport store.keys  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "usecases.offers -> redis" in result.stdout
    assert "domain.money -> store.keys" in result.stdout
