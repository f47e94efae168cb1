"""The contract gate (scripts/buf_check.sh, also run by `make lint`): proto/ passes buf lint and has no breaking
change against the released contract (proto/baseline.binpb) or the previous commit, and the gate does fail on a
renamed or renumbered field, a removed RPC, a new enum or service that breaks the naming rules.

buf is the version pinned in package-lock.json (installed by the script with `npm ci`); without npm or a reachable
registry these tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.conftest import ROOT

SCRIPT = ROOT / "scripts" / "buf_check.sh"
PROTO = ROOT / "proto"
SKIP_EXIT = 77  # BUF_CHECK_SKIP_EXIT: the script could not run buf (and said why on stderr)
TYPES = "posoffers/v1/types.proto"
OFFER_SERVICE = "posoffers/v1/offer_service.proto"
ADMIN_SERVICE = "posoffers/v1/admin_service.proto"

# The first run may install buf with npm ci.
pytestmark = pytest.mark.timeout(300)


def run_script(
    script: Path, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The script with the environment minus any BUF_* settings, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUF_")}
    done = subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    # Shown with -s or -rA, and in the report when a test fails.
    print(f"$ {script.name} {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def gate(*args: str, proto_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The repository's gate (its pinned buf), on proto/ or on a copy; skips the test when buf cannot run."""
    env = {"BUF_CHECK_SKIP_EXIT": str(SKIP_EXIT)}
    if proto_dir is not None:
        env["BUF_PROTO_DIR"] = str(proto_dir)
    done = run_script(SCRIPT, *args, env=env)
    if done.returncode == SKIP_EXIT:
        pytest.skip(f"contract gate not run: {done.stderr.strip()}")
    return done


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def buf() -> str:
    """The pinned buf CLI (installed once into node_modules/), or skip saying why it is not there."""
    done = gate("buf")
    assert done.returncode == 0, output(done)
    path = done.stdout.strip()
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=True)
    print(f"buf {version.stdout.strip()} at {path}")
    return path


def copy_of_contract(tmp_path: Path) -> Path:
    copy = tmp_path / "proto"
    shutil.copytree(PROTO, copy)
    return copy


def edit(proto_dir: Path, file: str, old: str, new: str) -> None:
    """Replaces `old`, which must occur exactly once, so that a mutation can never silently be a no-op."""
    path = proto_dir / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} should occur once in {file}; update this test with the contract"
    path.write_text(text.replace(old, new))


def append(proto_dir: Path, file: str, text: str) -> None:
    path = proto_dir / file
    path.write_text(path.read_text() + text)


def test_contract_passes_lint(buf: str) -> None:
    done = gate("lint")
    assert done.returncode == 0, output(done)


def test_contract_has_no_breaking_change_against_the_baseline(buf: str) -> None:
    done = gate("baseline")
    assert done.returncode == 0, output(done)


def test_contract_has_no_breaking_change_against_the_previous_commit(buf: str) -> None:
    done = gate("previous")  # skips, saying why, in a shallow clone or outside git
    assert done.returncode == 0, output(done)


def test_an_unchanged_copy_and_an_additive_change_pass(buf: str, tmp_path: Path) -> None:
    """The control for the failures below: copying proto/ alone changes nothing, and the policy's additive changes
    (a new field, message, enum, RPC) pass both halves."""
    copy = copy_of_contract(tmp_path)
    for part in ("lint", "baseline"):
        done = gate(part, proto_dir=copy)
        assert done.returncode == 0, output(done)
    edit(copy, TYPES, "  int64 points_to_redeem = 6;\n", "  int64 points_to_redeem = 6;\n  string note = 7;\n")
    append(copy, TYPES, "\nenum Tender {\n  TENDER_UNSPECIFIED = 0;\n  TENDER_CASH = 1;\n}\n")
    edit(
        copy,
        OFFER_SERVICE,
        "  rpc GetProfile(GetProfileRequest) returns (CustomerProfile);\n",
        "  rpc GetProfile(GetProfileRequest) returns (CustomerProfile);\n"
        "  rpc ListPurchases(ListPurchasesRequest) returns (ListPurchasesResponse);\n",
    )
    append(
        copy,
        OFFER_SERVICE,
        "\nmessage ListPurchasesRequest {\n  string customer_id = 1;\n}\n"
        "\nmessage ListPurchasesResponse {\n  repeated PurchaseReceipt receipts = 1;\n  Tender tender = 2;\n}\n",
    )
    for part in ("lint", "baseline"):
        done = gate(part, proto_dir=copy)
        assert done.returncode == 0, output(done)


# (file, old text, new text, what buf breaking must report): each a break the additive-only policy forbids.
BREAKING_CHANGES = [
    (
        TYPES,
        "int64 points_to_redeem = 6;",
        "int64 points_to_spend = 6;",
        'Field "6" on message "Basket" changed name from "points_to_redeem" to "points_to_spend".',
    ),
    (
        TYPES,
        "int64 unit_price_minor = 5;",
        "int64 unit_price_minor = 6;",
        'Previously present field "5" with name "unit_price_minor" on message "LineItem" was deleted.',
    ),
    (
        TYPES,
        "int64 quantity = 4;",
        "int32 quantity = 4;",
        'Field "4" with name "quantity" on message "LineItem" changed type from "int64" to "int32".',
    ),
    (
        TYPES,
        "CHANNEL_WEB = 3;",
        "CHANNEL_ONLINE = 3;",
        'Enum value "3" on enum "Channel" changed name from "CHANNEL_WEB" to "CHANNEL_ONLINE".',
    ),
    (
        OFFER_SERVICE,
        "rpc GetProfile(GetProfileRequest)",
        "rpc GetCustomerProfile(GetProfileRequest)",
        'Previously present RPC "GetProfile" on service "OfferService" was deleted.',
    ),
]

# (file, appended text, what buf lint must report): new names that break a rule the old names are exempt from
# (RewardType's values in types.proto, OfferAdmin in admin_service.proto) or one every name meets.
BAD_NEW_NAMES = [
    (
        TYPES,
        "\nenum Tender {\n  TENDER_UNSPECIFIED = 0;\n  CASH = 1;\n}\n",
        'Enum value name "CASH" should be prefixed with "TENDER_".',
    ),
    (ADMIN_SERVICE, "\nservice Reports {}\n", 'Service name "Reports" should be suffixed with "Service".'),
    (TYPES, "\nmessage tender_line {}\n", 'Message name "tender_line" should be PascalCase'),
    (
        OFFER_SERVICE,
        "\nservice PingService {\n  rpc Ping(PingMessage) returns (PingMessage);\n}\n\nmessage PingMessage {}\n",
        'RPC request type "PingMessage" should be named "PingRequest"',
    ),
]


def test_baseline_check_catches_renames_renumbering_and_removals(buf: str, tmp_path: Path) -> None:
    copy = copy_of_contract(tmp_path)
    for file, old, new, _ in BREAKING_CHANGES:
        edit(copy, file, old, new)
    done = gate("baseline", proto_dir=copy)
    assert done.returncode != 0, output(done)
    missed = [reported for *_, reported in BREAKING_CHANGES if reported not in output(done)]
    assert not missed, f"buf breaking did not report {missed}:\n{output(done)}"


def test_lint_catches_new_names_that_break_the_rules(buf: str, tmp_path: Path) -> None:
    copy = copy_of_contract(tmp_path)
    for file, addition, _ in BAD_NEW_NAMES:
        append(copy, file, addition)
    done = gate("lint", proto_dir=copy)
    assert done.returncode != 0, output(done)
    missed = [reported for *_, reported in BAD_NEW_NAMES if reported not in output(done)]
    assert not missed, f"buf lint did not report {missed}:\n{output(done)}"


def test_previous_commit_check_skips_on_a_first_commit_and_catches_a_rename(buf: str, tmp_path: Path) -> None:
    """A throwaway repository with the gate and the contract: one commit (nothing to compare, a stated skip), an
    additive commit (passes), a commit renaming a field (fails)."""
    git_bin = shutil.which("git")
    if git_bin is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / SCRIPT.name
    shutil.copy2(SCRIPT, script)
    shutil.copytree(PROTO, repo / "proto")
    git_env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "gate test",
        "GIT_AUTHOR_EMAIL": "gate@example.invalid",
        "GIT_COMMITTER_NAME": "gate test",
        "GIT_COMMITTER_EMAIL": "gate@example.invalid",
    }

    def git(*args: str) -> None:
        subprocess.run([git_bin, *args], cwd=repo, env={**os.environ, **git_env}, check=True, timeout=60)

    def commit(message: str) -> None:
        git("add", "-A")
        git("commit", "-q", "-m", message)

    def previous() -> subprocess.CompletedProcess[str]:
        return run_script(
            script, "previous", cwd=repo, env={**git_env, "BUF_BIN": buf, "BUF_CHECK_SKIP_EXIT": str(SKIP_EXIT)}
        )

    git("init", "-q")
    commit("the contract")
    first = previous()
    assert first.returncode == SKIP_EXIT, output(first)
    assert "SKIPPED breaking against HEAD~1" in first.stderr

    edit(
        repo / "proto", TYPES, "  int64 points_to_redeem = 6;\n", "  int64 points_to_redeem = 6;\n  string note = 7;\n"
    )
    commit("an additive change")
    additive = previous()
    assert additive.returncode == 0, output(additive)

    edit(repo / "proto", TYPES, "int64 points_to_redeem = 6;", "int64 points_to_spend = 6;")
    uncommitted = previous()  # the working tree is checked against HEAD~1 too
    assert uncommitted.returncode != 0, output(uncommitted)
    commit("a rename")
    renamed = previous()
    assert renamed.returncode != 0, output(renamed)
    assert 'changed name from "points_to_redeem" to "points_to_spend"' in output(renamed)


def test_gate_skips_saying_why_when_npm_is_missing(tmp_path: Path) -> None:
    """A fresh machine without npm: the gate does not run, says so, and does not fail `make lint`."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / SCRIPT.name
    shutil.copy2(SCRIPT, script)
    done = run_script(script, cwd=tmp_path, env={"BUF_NPM": str(tmp_path / "no-npm-here")})
    assert done.returncode == 0, output(done)
    assert "SKIPPED" in done.stderr
    assert "no-npm-here not found" in done.stderr
