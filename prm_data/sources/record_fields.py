"""One text field of a raw source record, checked the same way for every kind of record.

Problem records (validate.py) and HumanEval/MBPP code records (code_records.py) read their
fields through `text_field`: present, of an accepted type, valid UTF-8, non-empty and not
too long, each refusal a one-line reason naming the field (stored as the `failures` row's
reason). `label` is how the field is named in that reason (`"question field"`, `"mbpp key"`).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by a surrogateescape decode


def text_field(data: dict, name: str, label: str, max_chars: int, *, numbers_ok: bool = False,
               error: type[Exception] = ValueError) -> str:
    """`data[name]` as text, or `error` with the reason; numbers become text when `numbers_ok`."""
    if name not in data or data[name] is None:
        raise error(f"missing {label} {name!r}")
    value = data[name]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{label} {name!r} is not valid UTF-8 (byte {value[exc.start]:#04x} "
                        f"at offset {exc.start})") from None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise error(f"wrong type for {label} {name!r}: expected text"
                    f"{' or a number' if numbers_ok else ''}, got {type(value).__name__}")
    if not isinstance(value, str):
        if not numbers_ok:
            raise error(f"wrong type for {label} {name!r}: expected text, got {type(value).__name__}")
        value = _number_text(value, name, label, error)
    bad = SURROGATE.search(value)
    if bad:
        raise error(f"{label} {name!r} is not valid UTF-8 (byte "
                    f"{ord(bad.group()) - 0xDC00:#04x} at character {bad.start()})")
    if not value.strip():
        raise error(f"empty {label} {name!r}")
    if len(value) > max_chars:
        raise error(f"{label} {name!r} is {len(value)} characters, over the limit of {max_chars}")
    return value


def _number_text(value: int | float | Decimal, name: str, label: str, error: type[Exception]) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{label} {name!r} is not a finite number: {value}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
