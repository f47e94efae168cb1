"""The `pos-offers` CLI, walked the way a store engineer would: in-process through main() with captured output.

Tests taking `server_target` / `fresh_customer_id` (tests/e2e/conftest.py) run against this module's read-only server
with the demo catalog: store "soho", offer "dress-shoes-2x" (double points on dresses with 1 item from shoes, once
per customer), and a fresh clone of customer "samantha" (gold, buys only dresses, 500 points). The admin commands
get a server of their own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.cli import main
from tests.support.server_thread import KEYS_BY_TARGET, ServerThread, key_for

DRESS = "dress-1:dresses:1:120.00"
SHOES = "shoe-1:shoes:1:8000"  # minor units work too


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv), with the admin key of the test server `--target` names (as an operator passes --api-key)."""
    args = list(argv)
    if "--target" in args and (target := args[args.index("--target") + 1]) in KEYS_BY_TARGET:
        args += ["--api-key", key_for(target)]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- no server needed ---------------------------------------------------------------------------------------------


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "pos-offers"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    for command in ("offers", "evaluate", "commit", "profile", "admin"):
        assert command in result.stdout


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "admin", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "upsert-offer" in result.stdout


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evaluate", "--help")
    assert code == 0
    assert "SKU:CATEGORY:QTY:PRICE" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["evaluate", "samantha", "--line", DRESS], "--store"),
        (["evaluate", "samantha", "--store", "soho"], "--line"),
        (["offers", "samantha", "--channel", "fax"], "invalid choice"),
        (["--timeout", "0", "profile", "samantha"], "positive"),
        (["admin"], "required"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert out == ""


@pytest.fixture
def closed_target() -> Iterator[str]:
    """host:port where connecting is refused: usage errors must be caught before any call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "samantha", "--store", "soho", "--line", "dress-1:dresses:1:120.001"], "2 decimal places"),
        (["evaluate", "c", "--store", "s", "--currency", "JPY", "--line", "a:b:1:120.50"], "0 decimal places"),
        (["commit", "samantha", "--store", "soho", "--line", "dress-1:dresses:1"], "SKU:CATEGORY:QTY:PRICE"),
        (["offers", "samantha", "--lat", "40.7"], "--lat and --lon"),
        (["admin", "upsert-offer", "/nonexistent/offer.json"], "/nonexistent/offer.json"),
    ],
)
def test_bad_input_exits_2_without_calling(
    capsys: pytest.CaptureFixture[str], closed_target: str, argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "--target", closed_target, *argv)
    assert code == 2, err
    assert message in err
    assert "UNAVAILABLE" not in err


def test_bad_json_file_exits_2(capsys: pytest.CaptureFixture[str], closed_target: str, tmp_path: Path) -> None:
    path = tmp_path / "offer.json"
    path.write_text('{"offer_id": "x", "no_such_field": 1}')
    code, _, err = run(capsys, "--target", closed_target, "admin", "upsert-offer", str(path))
    assert code == 2
    assert "no_such_field" in err


def test_unreachable_server_exits_1_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, closed_target: str
) -> None:
    monkeypatch.setenv("POS_OFFERS_TARGET", closed_target)  # the default target comes from the environment
    code, out, err = run(capsys, "profile", "samantha", "--timeout", "1")
    assert code == 1
    assert err.startswith("error: UNAVAILABLE: ")
    assert closed_target.split(":")[1] in err
    assert "Traceback" not in err
    assert out == ""


# --- against a running server -------------------------------------------------------------------------------------


def profile_json(capsys: pytest.CaptureFixture[str], target: str, customer: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--target", target, "--json", "profile", customer)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_offers_lists_dress_shoes(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    code, out, err = run(capsys, "--target", server_target, "offers", fresh_customer_id, "--store", "soho")
    assert code == 0, err
    [line] = [line for line in out.splitlines() if "[dress-shoes-2x]" in line]
    assert "1 use left" in line


def test_evaluate_dress_only_hints_at_shoes(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    code, out, err = run(
        capsys, "--target", server_target, "evaluate", fresh_customer_id, "--store", "soho", "--line", DRESS
    )
    assert code == 0, err
    [near_miss] = [line for line in out.splitlines() if line.startswith("near miss:") and "[dress-shoes-2x]" in line]
    hint = near_miss.split("]: ", 1)[1]
    assert "shoes" in hint.lower()
    assert not any(line.startswith("applied:") and "dress-shoes-2x" in line for line in out.splitlines())
    assert "line 1: dress-1 (dresses) 1 x USD 120.00" in out


def test_evaluate_dress_and_shoes_applies_offer(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    argv = ["--target", server_target, "evaluate", fresh_customer_id, "--store", "soho", "--terminal", "till-1"]
    code, out, err = run(capsys, *argv, "--line", DRESS, "--line", SHOES)
    assert code == 0, err
    assert any(line.startswith("applied:") and "[dress-shoes-2x]" in line for line in out.splitlines())
    assert not any(line.startswith("near miss:") and "dress-shoes-2x" in line for line in out.splitlines())
    assert "subtotal USD 200.00" in out


def test_commit_twice_replays_and_credits_once(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    txn = f"txn-cli-{uuid.uuid4().hex}"
    argv = ["--target", server_target, "commit", fresh_customer_id, "--store", "soho", "--txn", txn]
    before = int(profile_json(capsys, server_target, fresh_customer_id).get("points_balance", "0"))

    code, first, err = run(capsys, *argv, "--line", DRESS, "--line", SHOES)
    assert code == 0, err
    assert f"receipt {txn}," in first
    assert "(replayed)" not in first
    middle = int(profile_json(capsys, server_target, fresh_customer_id).get("points_balance", "0"))
    assert middle > before
    assert f"balance {before} -> {middle}" in first

    code, second, err = run(capsys, *argv, "--line", DRESS, "--line", SHOES)
    assert code == 0, err
    assert f"receipt {txn} (replayed)" in second
    after = int(profile_json(capsys, server_target, fresh_customer_id).get("points_balance", "0"))
    assert after == middle


def test_commit_without_txn_prints_new_id(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    code, out, err = run(
        capsys, "--target", server_target, "commit", fresh_customer_id, "--store", "soho", "--line", DRESS
    )
    assert code == 0, err
    first_line = out.splitlines()[0]
    assert first_line.startswith("transaction id: txn-")
    assert f"receipt {first_line.removeprefix('transaction id: ')}" in out


def test_profile_shows_shoes_after_commit(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    code, out, err = run(capsys, "--target", server_target, "profile", fresh_customer_id)
    assert code == 0, err
    assert "tier: gold" in out
    assert "lifetime value: USD 25000.00" in out
    [categories] = [line for line in out.splitlines() if line.startswith("categories:")]
    assert "dresses" in categories and "shoes" not in categories

    code, out, err = run(
        capsys,
        "--target",
        server_target,
        "commit",
        fresh_customer_id,
        "--store",
        "soho",
        "--line",
        DRESS,
        "--line",
        SHOES,
    )
    assert code == 0, err
    assert "new categories: shoes" in out

    code, out, err = run(capsys, "--target", server_target, "profile", fresh_customer_id)
    assert code == 0, err
    [categories] = [line for line in out.splitlines() if line.startswith("categories:")]
    assert "shoes" in categories


def test_bad_line_exits_1_with_field(
    capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str
) -> None:
    code, out, err = run(
        capsys,
        "--target",
        server_target,
        "evaluate",
        fresh_customer_id,
        "--store",
        "soho",
        "--line",
        "dress-1:dresses:0:120.00",
    )
    assert code == 1
    assert err.startswith("error: INVALID_ARGUMENT: ")
    assert "basket.lines[0].quantity" in err
    assert "Traceback" not in err
    assert out == ""


def test_unknown_customer_exits_1(capsys: pytest.CaptureFixture[str], server_target: str) -> None:
    code, _, err = run(capsys, "--target", server_target, "profile", f"nobody-{uuid.uuid4().hex}")
    assert code == 1
    assert err.startswith("error: NOT_FOUND: ")


def test_json_output_parses(capsys: pytest.CaptureFixture[str], server_target: str, fresh_customer_id: str) -> None:
    # Global options may also follow the command.
    code, out, err = run(
        capsys, "evaluate", fresh_customer_id, "--store", "soho", "--line", DRESS, "--target", server_target, "--json"
    )
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["customer_id"] == fresh_customer_id
    assert evaluation["lines"][0]["line_id"] == "1"
    assert "dress-shoes-2x" in [m["offer_id"] for m in evaluation["near_misses"]]

    code, out, err = run(capsys, "--json", "--target", server_target, "offers", fresh_customer_id, "--store", "soho")
    assert code == 0, err
    assert "dress-shoes-2x" in [o["offer_id"] for o in json.loads(out)["offers"]]


def test_admin_commands(
    capsys: pytest.CaptureFixture[str], make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    server = make_server(demo_data=True)  # its own: a new store and offer change what every member is offered
    target = ["--target", server.target]
    code, out, err = run(capsys, *target, "admin", "offers")
    assert code == 0, err
    assert any(line.startswith("dress-shoes-2x v") for line in out.splitlines())

    code, out, err = run(capsys, *target, "admin", "offer", "dress-shoes-2x")
    assert code == 0, err
    assert "per customer 1" in out

    store_id, offer_id = "cli-store", "cli-offer"
    code, out, err = run(
        capsys,
        *target,
        "admin",
        "upsert-store",
        "--id",
        store_id,
        "--name",
        "CLI store",
        "--lat",
        "40.1",
        "--lon",
        "-73.1",
    )
    assert code == 0, err
    assert f"store {store_id}: CLI store" in out

    offer = {
        "offer_id": offer_id,
        "title": "CLI socks bonus",
        "description": "10 points for socks",
        "eligibility": {"store_ids": [store_id]},
        "condition": {"required_category": "socks", "min_quantity": 1},
        "reward": {"type": "BONUS_POINTS", "target_category": "socks", "bonus_points": 10},
        "starts_at": "2020-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
        "per_customer_limit": 1,
    }
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(offer))
    code, out, err = run(capsys, *target, "admin", "upsert-offer", str(path))
    assert code == 0, err
    assert out.startswith(f"saved {offer_id} v")

    code, out, err = run(capsys, *target, "admin", "archive", offer_id)
    assert code == 0, err
    assert "[archived]" in out
    code, out, err = run(capsys, *target, "admin", "offers")
    assert offer_id not in out
    code, out, err = run(capsys, *target, "--json", "admin", "offers", "--all")
    assert code == 0, err
    assert offer_id in [o["offer_id"] for o in json.loads(out)["offers"]]

    customer_id = "cli-customer"
    path = tmp_path / "customer.json"
    path.write_text(
        json.dumps({"customer_id": customer_id, "tier": "silver", "currency": "USD", "lifetime_value_minor": "12345"})
    )
    code, out, err = run(capsys, *target, "admin", "upsert-customer", str(path))
    assert code == 0, err
    code, out, err = run(capsys, *target, "profile", customer_id)
    assert code == 0, err
    assert "tier: silver" in out
    assert "lifetime value: USD 123.45" in out


def test_return_and_void_by_hand(
    server_target: str, fresh_customer_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", server_target, "--api-key", key_for(server_target)]
    txn = f"t-{fresh_customer_id}"
    line_args = ["--line", "DRESS-RED:dresses:1:120.00", "--line", "SHOE-BLK:shoes:1:89.00"]
    assert main([*base, "commit", fresh_customer_id, "--store", "soho", "--txn", txn, *line_args]) == 0
    capsys.readouterr()
    shoes_back = ["return", fresh_customer_id, "--store", "soho", "--txn", txn, "--line", "2:1", "--return-id", "r1"]
    assert main([*base, *shoes_back, "--returning-store", "tribeca"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"return r1 of {txn} at soho\nreturned in tribeca at ")
    assert "209 taken back" in out and "balance 829 -> 620" in out
    assert main([*base, *shoes_back]) == 0
    assert "(replayed)" in capsys.readouterr().out
    # Without the purchase's store the CLI refuses; with another store's there is no such purchase.
    assert main([*base, "void", fresh_customer_id, "--txn", txn]) == 2
    assert "--store" in capsys.readouterr().err
    assert main([*base, "void", fresh_customer_id, "--store", "elsewhere", "--txn", txn]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main([*base, "void", fresh_customer_id, "--store", "soho", "--txn", txn]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"void void:{txn} of {txn} at soho") and "-> 500" in out


def test_points_by_hand_export_and_erasure(
    capsys: pytest.CaptureFixture[str], demo_server: ServerThread, server_target: str, fresh_customer_id: str
) -> None:
    base = ["--target", server_target, "admin"]
    before = int(profile_json(capsys, server_target, fresh_customer_id).get("points_balance", "0"))
    adjust = [*base, "adjust-points", "--customer", fresh_customer_id, "--points", "25", "--reason", "missed receipt"]
    code, out, err = run(capsys, *adjust, "--adjustment-id", f"adj-cli-{fresh_customer_id}")
    assert code == 0, err
    assert f"adjustment adj-cli-{fresh_customer_id}, adjusted " in out
    assert f"points: +25, balance {before} -> {before + 25}" in out
    code, out, err = run(capsys, *adjust, "--adjustment-id", f"adj-cli-{fresh_customer_id}")
    assert code == 0 and "(replayed)" in out, err
    code, out, err = run(capsys, *adjust[:-2], "--points", "-100000", "--reason", "too much")
    assert code == 1 and "FAILED_PRECONDITION" in err

    code, out, err = run(capsys, *base, "export-customer", fresh_customer_id)
    assert code == 0, err
    document = json.loads(out)
    assert document["customer_id"] == fresh_customer_id
    assert document["live_profile"]["points_balance"] == before + 25

    code, out, err = run(capsys, *base, "forget-customer", fresh_customer_id)
    assert code == 2 and "--reason" in err  # the reason is required
    demo_server.drain()  # erasure waits for her records to reach SQL
    code, out, err = run(capsys, *base, "forget-customer", fresh_customer_id, "--reason", "erasure request 7")
    assert code == 0, err
    assert f"customer {fresh_customer_id} forgotten at " in out
    code, out, err = run(capsys, *base, "export-customer", fresh_customer_id)
    assert code == 1 and "NOT_FOUND" in err
