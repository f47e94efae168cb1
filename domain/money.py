"""Currencies the service accepts and their minor units (ISO 4217 exponents)."""

from __future__ import annotations

# Exponent = digits after the decimal point: 10**exponent minor units make one whole unit.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "NZD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "MXN": 2, "BRL": 2, "INR": 2, "CNY": 2, "HKD": 2, "SGD": 2, "ZAR": 2,
    "JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0,
    "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def is_known_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


def minor_per_unit(code: str) -> int:
    """Minor units in one whole unit of `code` (100 for USD, 1 for JPY). Raises KeyError if unknown."""
    return int(10 ** CURRENCY_EXPONENTS[code])


def format_minor(amount_minor: int, code: str) -> str:
    """Human text for an amount: 1234 USD -> "USD 12.34"; exact, no floats."""
    exponent = CURRENCY_EXPONENTS.get(code, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{code} {sign}{whole}" + (f".{frac:0{exponent}d}" if exponent else "")
