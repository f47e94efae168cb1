"""`pos-offers`: walk the offer story by hand against a running server.

    pos-offers offers samantha --store soho
    pos-offers evaluate samantha --store soho --line dress-1:dresses:1:120.00 --line shoe-7:shoes:1:80.00
    pos-offers commit samantha --store soho --txn txn-42 --line dress-1:dresses:1:120.00
    pos-offers profile samantha
    pos-offers admin offers --all
    pos-offers admin adjust-points --customer samantha --points 250 --reason "missed receipt 4711"
    pos-offers admin export-customer samantha
    pos-offers admin forget-customer samantha --reason "erasure request 2026-118"

Exit codes: 0 ok, 1 the server refused the call (the status goes to stderr), 2 bad command line or input file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, Inexact, localcontext
from pathlib import Path

from google.protobuf import json_format, text_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from posoffers.v1 import admin_service_pb2, offer_service_pb2, types_pb2

from client.auth import API_KEY_ENV
from client.client import DEFAULT_TARGET, PosOffersClient, make_basket, new_transaction_id
from client.errors import PosOffersError
from client.tls import TLS_CA_ENV, TLS_CERT_ENV, TLS_ENV, TLS_KEY_ENV
from domain.money import CURRENCY_EXPONENTS  # the pure engine, no I/O: one table of minor units

TARGET_ENV = "POS_OFFERS_TARGET"


_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?\d+\.\d+")


class UsageError(Exception):
    """Bad input on the command line or in a file: exit 2, nothing was sent."""


# Parsing


def parse_price(text: str, currency: str) -> int:
    """Unit price in minor units: "12000" is taken as minor units, "120.00" as a decimal amount of `currency`.
    Exact (Decimal), and a decimal with more places than the currency has is refused rather than rounded."""
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"price {text!r}: expected minor units (12000) or a decimal amount (120.00)")
    exponent = CURRENCY_EXPONENTS.get(currency.upper())
    if exponent is None:
        raise ValueError(f"price {text!r}: unknown currency {currency!r}; give the price in minor units")
    value = Decimal(text)
    places = -int(value.as_tuple().exponent)
    if places > exponent:
        raise ValueError(f"price {text!r}: {currency.upper()} has {exponent} decimal places")
    with localcontext() as ctx:
        ctx.prec = len(text) + exponent  # enough digits that scaling never rounds
        ctx.traps[Inexact] = True
        return int(value.scaleb(exponent))


def parse_line(text: str, currency: str, position: int) -> types_pb2.LineItem:
    """SKU:CATEGORY:QTY:PRICE → LineItem with line_id = position. Only the syntax is checked here: values such as
    quantity 0 go to the server, whose INVALID_ARGUMENT names the field."""
    parts = text.rsplit(":", 3)  # from the right, so a SKU may itself contain ':'
    if len(parts) != 4:
        raise ValueError(f"line {text!r}: expected SKU:CATEGORY:QTY:PRICE")
    sku, category, quantity, price = parts
    if not _INTEGER.fullmatch(quantity.strip()):
        raise ValueError(f"line {text!r}: quantity {quantity!r} is not an integer")
    return types_pb2.LineItem(
        line_id=str(position),
        sku=sku,
        category=category,
        quantity=int(quantity),
        unit_price_minor=parse_price(price, currency),
    )


# Formatting


def format_money(amount_minor: int, currency: str) -> str:
    """1234 USD → "USD 12.34"; integers only, so no float rounding."""
    exponent = CURRENCY_EXPONENTS.get(currency.upper(), 2)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{currency} {sign}{whole}" + (f".{frac:0{exponent}d}" if exponent else "")


def format_time(ts: Timestamp, unset: str = "-") -> str:
    if ts.seconds == 0 and ts.nanos == 0:
        return unset
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_active_offers(response: offer_service_pb2.ListActiveOffersResponse) -> list[str]:
    if not response.offers:
        return ["no offers"]
    lines = []
    for offer in response.offers:
        left = offer.remaining_uses
        uses = f"{left} use{'' if left == 1 else 's'} left" if left else "no use limit"
        ends = format_time(offer.ends_at, unset="no end")
        lines.append(f"{offer.title} [{offer.offer_id}] | {offer.reason} | ends {ends} | {uses}")
    return lines


def format_evaluation(evaluation: types_pb2.BasketEvaluation, basket: types_pb2.Basket) -> list[str]:
    currency = evaluation.currency or basket.currency
    sent = {item.line_id: item for item in basket.lines}
    out = []
    for result in evaluation.lines:
        item = sent.get(result.line_id)
        what = (
            f"{item.sku} ({item.category}) {item.quantity} x {format_money(item.unit_price_minor, currency)}"
            if item
            else ""
        )
        text = f"line {result.line_id}: {what} -> {result.base_points} base + {result.bonus_points} bonus points"
        if result.discount_minor:
            text += f", discount {format_money(result.discount_minor, currency)}"
        if result.offer_ids:
            text += f" [{', '.join(result.offer_ids)}]"
        out.append(text)
    for applied in evaluation.applied_offers:
        gain = f"+{applied.bonus_points} points"
        if applied.discount_minor:
            gain += f", {format_money(applied.discount_minor, currency)} off"
        out.append(f"applied: {applied.title} [{applied.offer_id}] {gain}: {applied.explanation}")
    for miss in evaluation.near_misses:
        out.append(f"near miss: {miss.title} [{miss.offer_id}]: {miss.hint}")
    points = f"points: earned {evaluation.points_earned}"
    if evaluation.points_redeemed:
        redeemed = format_money(evaluation.redeemed_value_minor, currency)
        points += f", redeemed {evaluation.points_redeemed} ({redeemed})"
    out.append(f"{points}, balance {evaluation.balance_before} -> {evaluation.balance_after}")
    if evaluation.points_earned and evaluation.HasField("points_available_at"):
        out.append(f"the points earned are spendable from {format_time(evaluation.points_available_at)}")
    out.append(
        f"subtotal {format_money(evaluation.subtotal_minor, currency)}, "
        f"discount {format_money(evaluation.total_discount_minor, currency)}, "
        f"due {format_money(evaluation.total_due_minor, currency)}"
    )
    return out


def format_receipt(receipt: offer_service_pb2.PurchaseReceipt, basket: types_pb2.Basket) -> list[str]:
    head = f"receipt {receipt.transaction_id}"
    if receipt.replayed:
        head += " (replayed)"
    head += f", committed {format_time(receipt.committed_at)}"
    out = [head, *format_evaluation(receipt.evaluation, basket)]
    if receipt.new_categories:
        out.append(f"new categories: {', '.join(receipt.new_categories)}")
    return out


_WITHHELD = "(not shown to this key)"


def format_profile(profile: types_pb2.CustomerProfile) -> list[str]:
    name = f" ({profile.display_name})" if profile.display_name else ""
    out = [
        f"{profile.customer_id}{name}",
        f"tier: {profile.tier or '-'}",
        f"lifetime value: {format_money(profile.lifetime_value_minor, profile.currency or 'USD')}",
        f"points balance: {profile.points_balance}"
        + (
            f" ({profile.points_available} available, {profile.points_pending} pending)"
            if profile.points_pending
            else ""
        )
        + (f" (debt {profile.points_debt})" if profile.points_debt else ""),
        f"categories: {', '.join(profile.categories_purchased) or '-'}",
        f"purchases: {profile.purchase_count}, last {format_time(profile.last_purchase_at, unset='never')}",
    ]
    withheld = set(profile.withheld_fields)
    hidden = {"lifetime value: ": "lifetime_value_minor", "categories: ": "categories_purchased"}
    hidden |= {"purchases: ": "purchase_count", "tier: ": "tier"}
    out = [
        next((f"{label}{_WITHHELD}" for label, f in hidden.items() if line.startswith(label) and f in withheld), line)
        for line in out
    ]
    out += [f"pending: {p.points} points spendable from {format_time(p.available_at)}" for p in profile.pending_points]
    if profile.points_expiring:
        out.append(f"expiring: {profile.points_expiring} points on {format_time(profile.points_expire_at)}")
    if profile.HasField("home_location"):
        out.append(f"home: {profile.home_location.latitude:.4f}, {profile.home_location.longitude:.4f}")
    return out


def format_return(receipt: offer_service_pb2.ReturnReceipt) -> list[str]:
    kind = "void" if receipt.voided else "return"
    head = f"{kind} {receipt.return_id} of {receipt.transaction_id}"
    head += f" at {receipt.store_id}" if receipt.store_id else ""
    head += " (replayed)" if receipt.replayed else ""
    taken_back = receipt.returning_store_id
    where = f" in {taken_back}" if taken_back and taken_back != receipt.store_id else ""
    out = [head, f"returned{where} at {format_time(receipt.returned_at)}"]
    out += [
        f"line {line.line_id}: {line.quantity} back, {line.points_reversed} points taken back, "
        f"{format_money(line.value_minor, receipt.currency or 'USD')}"
        for line in receipt.lines
    ]
    out += list(receipt.explanations)
    out.append(
        f"points: {receipt.points_reversed} taken back, {receipt.points_refunded} refunded, "
        f"balance {receipt.balance_before} -> {receipt.balance_after}"
    )
    if receipt.points_debt_after or receipt.points_debt_before:
        out.append(f"points debt: {receipt.points_debt_before} -> {receipt.points_debt_after}")
    return out


def format_offer_row(offer: types_pb2.Offer) -> str:
    status = {types_pb2.OFFER_STATUS_DRAFT: " [draft]", types_pb2.OFFER_STATUS_PAUSED: " [paused]"}
    archived = " [archived]" if offer.archived else status.get(offer.status, "")
    return f"{offer.offer_id} v{offer.version}{archived} | {offer.title} | ends {format_time(offer.ends_at, 'never')}"


def format_offer(offer: types_pb2.Offer) -> list[str]:
    def one_line(message: Message) -> str:
        return text_format.MessageToString(message, as_one_line=True) or "-"

    return [
        format_offer_row(offer),
        f"description: {offer.description or '-'}",
        f"eligibility: {one_line(offer.eligibility)}",
        f"condition: {one_line(offer.condition)}",
        f"reward: {one_line(offer.reward)}",
        f"window: {format_time(offer.starts_at)} .. {format_time(offer.ends_at)}",
        f"limits: per customer {offer.per_customer_limit or 'unlimited'}, "
        f"total {offer.total_redemption_limit or 'unlimited'}",
        f"priority {offer.priority}, exclusive group {offer.exclusive_group or '-'}, "
        f"updated {format_time(offer.updated_at)}",
    ]


def format_store(store: types_pb2.Store) -> list[str]:
    where = f"{store.location.latitude:.4f}, {store.location.longitude:.4f}" if store.HasField("location") else "-"
    return [f"store {store.store_id}: {store.name} ({where}) {store.timezone or ''}".rstrip()]


# Commands: each returns the response message (printed for --json) and its human text.

Result = tuple[Message, list[str]]


def _basket(args: argparse.Namespace) -> types_pb2.Basket:
    try:
        lines = [parse_line(text, args.currency, i) for i, text in enumerate(args.line, start=1)]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return make_basket(
        args.customer,
        args.store,
        lines,
        currency=args.currency,
        terminal_id=args.terminal,
        points_to_redeem=args.redeem,
    )


def _read_json(path: str, message: Message) -> None:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        json_format.Parse(text, message)
    except (OSError, json_format.ParseError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def cmd_offers(args: argparse.Namespace, client: PosOffersClient) -> Result:
    if (args.lat is None) != (args.lon is None):
        raise UsageError("--lat and --lon go together")
    location = (args.lat, args.lon) if args.lat is not None else None
    response = client.list_active_offers(
        args.customer, channel=args.channel, store_id=args.store, location=location, page_size=args.limit
    )
    return response, format_active_offers(response)


def cmd_evaluate(args: argparse.Namespace, client: PosOffersClient) -> Result:
    basket = _basket(args)
    evaluation = client.evaluate_basket(basket)
    return evaluation, format_evaluation(evaluation, basket)


def cmd_commit(args: argparse.Namespace, client: PosOffersClient) -> Result:
    basket = _basket(args)
    txn = args.txn or new_transaction_id()
    if not args.txn and not args.json:
        # Printed before the call, so a till operator can retry with the same id if this one times out.
        print(f"transaction id: {txn}")
    receipt = client.commit_purchase(txn, basket)
    return receipt, format_receipt(receipt, basket)


def _return_line(text: str) -> tuple[str, int]:
    line_id, sep, qty = text.rpartition(":")
    if not sep or not line_id or not qty.isdigit():
        raise UsageError(f"--line {text!r}: expected LINE_ID:QTY")
    return line_id, int(qty)


def cmd_return(args: argparse.Namespace, client: PosOffersClient) -> Result:
    lines = [_return_line(text) for text in args.line]
    return_id = args.return_id or f"ret-{new_transaction_id().removeprefix('txn-')}"
    if not args.return_id and not args.json:
        print(f"return id: {return_id}")  # printed first, so a timed-out return can be retried with it
    receipt = client.return_purchase(
        return_id, args.txn, args.customer, lines, store_id=args.store, returning_store_id=args.returning_store
    )
    return receipt, format_return(receipt)


def cmd_void(args: argparse.Namespace, client: PosOffersClient) -> Result:
    receipt = client.void_purchase(args.txn, args.customer, store_id=args.store)
    return receipt, format_return(receipt)


def cmd_profile(args: argparse.Namespace, client: PosOffersClient) -> Result:
    profile = client.get_profile(args.customer)
    return profile, format_profile(profile)


def cmd_admin_offers(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offers = list(client.iter_offers(include_archived=args.all))
    return admin_service_pb2.ListOffersResponse(offers=offers), [format_offer_row(o) for o in offers] or ["no offers"]


def cmd_admin_offer(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offer = client.get_offer(args.offer_id)
    return offer, format_offer(offer)


def cmd_admin_upsert_offer(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offer = types_pb2.Offer()
    _read_json(args.file, offer)
    saved = client.upsert_offer(offer)
    return saved, [f"saved {format_offer_row(saved)}"]


def cmd_admin_archive(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offer = client.archive_offer(args.offer_id)
    return offer, [format_offer_row(offer)]


def cmd_admin_pause(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offer = client.pause_offer(args.offer_id)
    return offer, [format_offer_row(offer)]


def cmd_admin_resume(args: argparse.Namespace, client: PosOffersClient) -> Result:
    offer = client.resume_offer(args.offer_id)
    return offer, [format_offer_row(offer)]


def cmd_admin_expire_points(args: argparse.Namespace, client: PosOffersClient) -> Result:
    report = client.expire_points(timeout=max(getattr(args, "timeout", 2.0), 60.0))  # a job, not a till call
    return report, [
        f"checked {report.customers_checked} members, expired {report.points_expired} points "
        f"of {report.customers_expired}"
    ]


def cmd_admin_upsert_store(args: argparse.Namespace, client: PosOffersClient) -> Result:
    store = types_pb2.Store(
        store_id=args.id,
        name=args.name,
        location=types_pb2.GeoPoint(latitude=args.lat, longitude=args.lon),
        timezone=args.timezone,
    )
    saved = client.upsert_store(store)
    return saved, format_store(saved)


def cmd_admin_upsert_customer(args: argparse.Namespace, client: PosOffersClient) -> Result:
    customer = types_pb2.CustomerProfile()
    _read_json(args.file, customer)
    saved = client.upsert_customer(customer)
    return saved, format_profile(saved)


_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time with its zone (2026-12-01T00:00:00Z) or a span back from now (90s, 15m, 1h, 7d)."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a time like 2026-12-01T00:00:00Z or a span like 1h") from None
    if moment.tzinfo is None:
        raise UsageError(f"--since {text!r}: give the zone (Z or +01:00)")
    return moment


def format_audit_event(event: admin_service_pb2.AuditEvent) -> str:
    when = event.occurred_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = f"{event.key_id} ({event.key_name})" if event.key_name else (event.key_id or "no key")
    times = f" x{event.count}" if event.count > 1 else ""
    parts = [when, event.action + times, event.target or "-", who, event.outcome, event.peer or "-"]
    if event.request_id:
        parts.append(f"request {event.request_id}")
    if event.detail and event.detail != "{}":
        parts.append(event.detail)
    return "  ".join(parts)


def cmd_admin_audit_log(args: argparse.Namespace, client: PosOffersClient) -> Result:
    since = parse_since(args.since) if args.since else None
    events = list(client.iter_audit_events(since=since, key_id=args.key))
    response = admin_service_pb2.ListAuditEventsResponse(events=events)
    return response, [format_audit_event(e) for e in events] or ["no audit events"]


def cmd_admin_adjust_points(args: argparse.Namespace, client: PosOffersClient) -> Result:
    adjusted = client.adjust_points(args.customer, args.points, args.reason, adjustment_id=args.adjustment_id or None)
    lines = [
        f"adjustment {adjusted.adjustment_id}{' (replayed)' if adjusted.replayed else ''}, "
        f"adjusted {format_time(adjusted.adjusted_at)}",
        f"points: {adjusted.points:+d}, balance {adjusted.balance_before} -> {adjusted.balance_after}",
    ]
    if adjusted.points_debt_before or adjusted.points_debt_after:
        lines.append(f"points debt {adjusted.points_debt_before} -> {adjusted.points_debt_after}")
    return adjusted, lines


def cmd_admin_export_customer(args: argparse.Namespace, client: PosOffersClient) -> Result:
    exported = client.export_customer(args.customer)
    # The document itself, pretty-printed, is the output (with --json: the response message).
    return exported, [json.dumps(json.loads(exported.json), indent=2, sort_keys=True, ensure_ascii=False)]


def cmd_admin_forget_customer(args: argparse.Namespace, client: PosOffersClient) -> Result:
    forgotten = client.forget_customer(args.customer, args.reason)
    return forgotten, [f"customer {forgotten.customer_id} forgotten at {format_time(forgotten.forgotten_at)}"]


# Parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _global_options() -> argparse.ArgumentParser:
    # SUPPRESS defaults let the global options go before or after the command without one overwriting the other.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        help=f"server host:port (default: ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    common.add_argument(
        "--timeout", type=_positive_float, default=argparse.SUPPRESS, help="deadline per call in seconds (default 2)"
    )
    common.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        help=f"the API key's secret (default: ${API_KEY_ENV}; prefer the variable: arguments show in `ps`)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the response message as JSON"
    )
    _add_tls_options(common)
    return common


def _add_tls_options(common: argparse.ArgumentParser) -> None:
    common.add_argument(
        "--tls", action="store_true", default=argparse.SUPPRESS, help=f"TLS with the system's roots (or ${TLS_ENV}=1)"
    )
    common.add_argument(
        "--tls-ca",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help=f"TLS: the CA that signed the server's certificate (default: ${TLS_CA_ENV})",
    )
    common.add_argument(
        "--tls-cert",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help=f"mutual TLS: this terminal's certificate (default: ${TLS_CERT_ENV})",
    )
    common.add_argument(
        "--tls-key",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help=f"mutual TLS: this terminal's private key (default: ${TLS_KEY_ENV})",
    )


def _add_basket_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer", metavar="CUSTOMER")
    parser.add_argument("--store", required=True)
    parser.add_argument("--terminal", default="")
    parser.add_argument("--currency", default="USD", type=str.upper)
    parser.add_argument(
        "--line",
        action="append",
        required=True,
        metavar="SKU:CATEGORY:QTY:PRICE",
        help="PRICE is the unit price in minor units (12000) or a decimal (120.00); repeat for more lines",
    )
    parser.add_argument("--redeem", type=int, default=0, metavar="POINTS", help="points to pay with")


Handler = Callable[[argparse.Namespace, PosOffersClient], Result]


def _client(args: argparse.Namespace, target: str) -> PosOffersClient:
    try:
        return PosOffersClient(
            target,
            timeout=getattr(args, "timeout", 2.0),
            api_key=getattr(args, "api_key", None),
            tls=True if getattr(args, "tls", False) else None,
            tls_ca=getattr(args, "tls_ca", None),
            tls_cert=getattr(args, "tls_cert", None),
            tls_key=getattr(args, "tls_key", None),
        )
    except ValueError as exc:  # TLS files that cannot be read, a certificate without its key
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class _Commands:
    """A level of subcommands, each of which takes the global options too."""

    # argparse._SubParsersAction is private but it is what add_subparsers returns (annotation only).
    sub: argparse._SubParsersAction[argparse.ArgumentParser]
    common: argparse.ArgumentParser

    def add(self, name: str, handler: Handler | None, help_: str) -> argparse.ArgumentParser:
        p = self.sub.add_parser(name, parents=[self.common], help=help_, description=help_)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p


def _add_till_commands(commands: _Commands) -> None:
    """What a till or the app does for a customer: offers, evaluate, commit, return, void, profile."""
    p = commands.add("offers", cmd_offers, "offers a customer can use now, best first")
    p.add_argument("customer", metavar="CUSTOMER")
    p.add_argument("--channel", choices=("app", "pos", "web"), default="app")
    p.add_argument("--store", default="", help="store at the till; its location counts for distance rules")
    p.add_argument("--lat", type=float, help="customer's latitude (with --lon)")
    p.add_argument("--lon", type=float, help="customer's longitude (with --lat)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N offers (server default 20)")

    p = commands.add("evaluate", cmd_evaluate, "dry-run a basket: points, applied offers, near misses")
    _add_basket_options(p)

    p = commands.add("commit", cmd_commit, "commit a purchase once per transaction id; prints the receipt")
    _add_basket_options(p)
    p.add_argument("--txn", default="", metavar="TXN_ID", help="idempotency key (default: a new one, printed)")

    p = commands.add("return", cmd_return, "take back lines of a purchase, once per return id")
    p.add_argument("customer", metavar="CUSTOMER")
    p.add_argument("--store", required=True, help="the purchase's store, as printed on the receipt")
    p.add_argument("--txn", required=True, metavar="TXN_ID", help="the purchase's transaction id")
    p.add_argument("--line", action="append", required=True, metavar="LINE_ID:QTY", help="repeat for more lines")
    p.add_argument("--return-id", default="", help="idempotency key within the purchase (default: a new one, printed)")
    p.add_argument("--returning-store", default="", help="the store taking the goods back")

    p = commands.add("void", cmd_void, "undo a purchase whole, on its business day")
    p.add_argument("customer", metavar="CUSTOMER")
    p.add_argument("--store", required=True, help="the purchase's store, as printed on the receipt")
    p.add_argument("--txn", required=True, metavar="TXN_ID")

    p = commands.add("profile", cmd_profile, "a customer's tier, lifetime value, points and categories")
    p.add_argument("customer", metavar="CUSTOMER")


def _add_admin_commands(commands: _Commands) -> None:
    """`admin ...`: the catalog's offers, stores and customers."""
    admin = commands.add("admin", None, "catalog management: offers, stores, customers")
    sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")
    admin_commands = _Commands(sub, commands.common)
    p = admin_commands.add("offers", cmd_admin_offers, "list offers")
    p.add_argument("--all", action="store_true", help="include archived offers")
    p = admin_commands.add("offer", cmd_admin_offer, "show one offer")
    p.add_argument("offer_id", metavar="OFFER_ID")
    p = admin_commands.add("upsert-offer", cmd_admin_upsert_offer, "create or replace an offer from JSON")
    p.add_argument("file", metavar="FILE.json", help="a posoffers.v1.Offer as JSON; - reads stdin")
    p = admin_commands.add("archive", cmd_admin_archive, "archive an offer")
    p.add_argument("offer_id", metavar="OFFER_ID")
    p = admin_commands.add("pause", cmd_admin_pause, "stop an offer being listed or applied")
    p.add_argument("offer_id", metavar="OFFER_ID")
    p = admin_commands.add("resume", cmd_admin_resume, "make a paused or draft offer active again")
    p.add_argument("offer_id", metavar="OFFER_ID")
    admin_commands.add("expire-points", cmd_admin_expire_points, "run the points-expiry job (safe twice)")
    p = admin_commands.add("upsert-store", cmd_admin_upsert_store, "create or replace a store")
    p.add_argument("--id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    p.add_argument("--timezone", default="", help="IANA zone, e.g. America/New_York")
    p = admin_commands.add("upsert-customer", cmd_admin_upsert_customer, "import a customer profile from JSON")
    p.add_argument("file", metavar="FILE.json", help="a posoffers.v1.CustomerProfile as JSON; - reads stdin")
    p = admin_commands.add("audit-log", cmd_admin_audit_log, "the audit log, oldest first")
    p.add_argument("--since", default="", help="from this time (2026-12-01T00:00:00Z) or this long ago (1h, 7d)")
    p.add_argument("--key", default="", metavar="KEY_ID", help="only this key's events")
    _add_privacy_commands(admin_commands)


def _add_privacy_commands(admin_commands: _Commands) -> None:
    """`admin adjust-points`, `export-customer`, `forget-customer`: a member's points by hand, her data."""
    p = admin_commands.add("adjust-points", cmd_admin_adjust_points, "add or take a member's points, with a reason")
    p.add_argument("--customer", required=True, metavar="ID")
    p.add_argument("--points", required=True, type=int, metavar="N", help="negative takes points (never below 0)")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the ledger and the audit log)")
    p.add_argument("--adjustment-id", default="", metavar="ID", help="idempotency key (default: a new one, printed)")
    p = admin_commands.add("export-customer", cmd_admin_export_customer, "everything held about a member, as JSON")
    p.add_argument("customer", metavar="ID")
    p = admin_commands.add("forget-customer", cmd_admin_forget_customer, "erase a member (the books keep her amounts)")
    p.add_argument("customer", metavar="ID")
    p.add_argument("--reason", required=True, metavar="TEXT", help="e.g. the erasure request's reference")


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="pos-offers",
        parents=[common],
        description="Offer recognition by hand: list offers, evaluate and commit baskets, manage the catalog.",
        epilog="Exit codes: 0 ok, 1 the server refused the call, 2 bad command line or input.",
    )
    commands = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)
    _add_till_commands(commands)
    _add_admin_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    args.json = getattr(args, "json", False)
    target = getattr(args, "target", None) or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    handler: Handler = args.handler
    try:
        with _client(args, target) as client:
            message, lines = handler(args, client)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except PosOffersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.request_id:
            print(f"request id: {exc.request_id}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json_format.MessageToJson(message, preserving_proto_field_name=True))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
