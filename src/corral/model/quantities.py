"""Resource quantities, parsed to exact integers.

CPU is counted in millicores: ``"250m"`` → 250, ``"0.5"`` → 500, ``"2"`` → 2000. Memory in bytes:
``"64Mi"`` → 67108864, ``"1G"`` → 10**9, ``"512"`` → 512, ``"1.5Gi"`` → 1610612736. Parsing is exact
(``Decimal``), rejects negatives, NaN, exponents that overflow, and fractions of a millicore or byte,
and says what a valid value looks like.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([A-Za-z]*)$")
_MAX = 2**62

CPU_HINT = 'a CPU quantity such as "250m", "0.5" or "2"'
MEMORY_HINT = 'a memory quantity such as "64Mi", "1Gi", "500M" or a number of bytes'


class QuantityError(ValueError):
    pass


def _split(text: str, hint: str) -> tuple[Decimal, str]:
    if not isinstance(text, str) or not text:
        raise QuantityError(f"must be {hint}")
    m = _NUMBER.match(text.strip())
    if not m or text != text.strip():
        if text.startswith("-"):
            raise QuantityError(f"must not be negative; use {hint}")
        raise QuantityError(f"{text!r} is not {hint}")
    try:
        return Decimal(m.group(1)), m.group(2)
    except InvalidOperation as e:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not {hint}") from e


def parse_cpu(text: str) -> int:
    """Millicores in a CPU quantity."""
    number, suffix = _split(text, CPU_HINT)
    if suffix == "m":
        value = number
    elif suffix == "":
        value = number * 1000
    else:
        raise QuantityError(f"{text!r} has unknown CPU unit {suffix!r}; use {CPU_HINT}")
    if value != value.to_integral_value():
        raise QuantityError(f"{text!r} is finer than one millicore; use {CPU_HINT}")
    if value > _MAX:
        raise QuantityError(f"{text!r} is too large")
    return int(value)


def parse_memory(text: str) -> int:
    """Bytes in a memory quantity."""
    number, suffix = _split(text, MEMORY_HINT)
    if suffix in _BINARY:
        value = number * _BINARY[suffix]
    elif suffix in _DECIMAL:
        value = number * _DECIMAL[suffix]
    elif suffix == "":
        value = number
    else:
        raise QuantityError(f"{text!r} has unknown memory unit {suffix!r}; use {MEMORY_HINT}")
    if value != value.to_integral_value():
        raise QuantityError(f"{text!r} is not a whole number of bytes; use {MEMORY_HINT}")
    if value > _MAX:
        raise QuantityError(f"{text!r} is too large")
    return int(value)


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: int) -> str:
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
