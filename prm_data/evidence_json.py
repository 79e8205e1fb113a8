"""Many evidence dicts to one Arrow string column of JSON text, in one encoder call.

The stored evidence of a step label is `json.dumps(evidence, sort_keys=True,
default=str)` (prm_data/records.py, `StepLabel.to_row`). Encoding one label at
a time costs a Python call per label (~5 us with `json`, ~2.4 us with orjson,
most of it the call itself); `encode_evidence` encodes a whole shard's evidence
in one `orjson.dumps` of a list in which a raw `0x1e` byte (an
`orjson.Fragment`, copied into the output as it is) separates the labels. No
encoded value can hold a raw `0x1e` (JSON escapes every control character in a
string), so Arrow's `split_pattern` cuts the one output buffer at them and the
column is built without a Python object per label.

The stored text means what `json.dumps` stored: the same value once parsed,
compact and with the keys in the order the labeler wrote them where json
sorted them and put a space after `:` and `,`:

- orjson writes NaN and infinities as `null` (json: `NaN`, `Infinity`): the
  labels whose evidence holds a non-finite float are encoded again with
  `json`, found column by column in the fields whose declared type can hold a
  float (`_restore_non_finite`); in a field declared otherwise (an integer
  field given a NaN) it is stored as `null`;
- values orjson refuses (a non-`str` dict key, an int beyond 64 bits, a lone
  surrogate, a cycle) make the chunk fall back to one label at a time, each
  by orjson or else by `json` itself (which raises where it raised);
- subclasses of builtins, dataclasses and datetimes go through `_like_json`,
  which does what json does with them (a float or int subclass as its number,
  a namedtuple as a list, anything else as its `str`).

One more difference, on purpose: a plain `Enum` member is stored as its
value (orjson), where json stored `str(member)`; an `IntEnum`/`StrEnum` is the
same either way.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Mapping, Sequence
from itertools import repeat

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = orjson.Fragment(b"\x1e")
_BETWEEN = b",\x1e,"  # what orjson writes between two labels: a comma, the separator, a comma
# Keys stay in the order the labeler wrote them: sorting them (as json.dumps(sort_keys=True) did) was a third
# of orjson's time, and the parsed value is the same
_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_JSON = json.JSONEncoder(sort_keys=True, default=str).encode  # what the row path stores (StepLabel.to_row)
CHUNK = 1 << 16  # labels per encoder call: bounds the buffer for any shard size
MAX_BYTES = np.iinfo(np.int32).max - 2  # one string array's text (int32 offsets, and 2 bytes of padding)


class _NonFinite(TypeError):
    """A NaN or infinity in a value orjson hands to `_like_json`: the label is left to json."""


def _like_json(value):
    """What json.dumps(default=str) makes of a value orjson hands back: its number, list, dict or str."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # bools never get here: orjson writes them itself
        return int.__int__(value)
    if isinstance(value, float):
        out = float.__float__(value)
    elif isinstance(value, (list, tuple)):
        out = list(value)
    elif isinstance(value, dict):
        out = dict(value)
    else:
        return str(value)
    if _has_non_finite(out):  # orjson would write null: raising sends the label to json
        raise _NonFinite(f"a non-finite float in a {type(value).__name__}")
    return out


def encode_evidence(evidence: Sequence[dict], types: Mapping[str, pa.DataType | str] | None = None) -> pa.ChunkedArray:
    """Each dict of `evidence` as one JSON object, in order, as a string column.

    `types`: the fields' declared Arrow types (`StepLabels`' evidence; "json"
    for any shape), which tell where a non-finite float can be (see
    `_restore_non_finite`); without them every field is looked at as "json".
    """
    chunks = [part for start in range(0, len(evidence), CHUNK)
              for part in _encode_chunk(evidence[start:start + CHUNK], types)]
    return pa.chunked_array(chunks, pa.string())


def _encode_chunk(evidence: Sequence[dict], types) -> list[pa.Array]:
    """The labels' JSON as one string array, or as several where one would pass a string array's 2 GiB."""
    n = len(evidence)
    items = [_SEPARATOR] * (2 * n - 1)
    items[::2] = evidence
    try:
        encoded = orjson.dumps(items, default=_like_json, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: some label needs json itself
        return [_encode_one_by_one(evidence, types)]
    if len(encoded) > MAX_BYTES:  # too much text for one array: halves, each its own
        return (_encode_chunk(evidence[:n // 2], types) + _encode_chunk(evidence[n // 2:], types) if n > 1
                else [_encode_one_by_one(evidence, types)])  # one label of 2 GiB: pyarrow then says so
    # encoded = "[" label0 ",\x1e," label1 ",\x1e," ... "]": cut at the 3-byte separators (one pass in C++),
    # the pieces are the labels end to end but for the bracket before the first and after the last, which
    # moving the first and last offsets by one leaves out (the pieces' text is not copied again)
    whole = pa.Array.from_buffers(pa.binary(), 1, [None, pa.py_buffer(np.array([0, len(encoded)], np.int32)),
                                                   pa.py_buffer(encoded)])
    pieces = pc.split_pattern(whole, pattern=_BETWEEN).values
    if len(pieces) != n:  # an orjson.Fragment inside the evidence itself: its 0x1e bytes cut a label
        return [_encode_one_by_one(evidence, types)]
    offsets = np.frombuffer(pieces.buffers()[1], np.int32, n + 1, pieces.offset * 4).copy()
    offsets[0] += 1
    offsets[-1] -= 1
    column = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pieces.buffers()[2]])
    # label i begins in `encoded` 3 bytes later than in the pieces' text for each separator before it
    starts = lambda: np.append(offsets[:-1].astype(np.int64) + 3 * np.arange(n), len(encoded) + 2)  # noqa: E731
    return [_restore_non_finite(column, evidence, types, encoded, starts)]


def _encode_one_by_one(evidence: Sequence[dict], types) -> pa.Array:
    out = []
    for value in evidence:
        try:
            out.append(orjson.dumps(value, default=_like_json, option=_OPTIONS))
        except TypeError:
            out.append(_JSON(value).encode())
    def starts() -> np.ndarray:
        out_starts = np.zeros(len(out) + 1, np.int64)
        np.cumsum([len(text) for text in out], out=out_starts[1:])
        return out_starts

    return _restore_non_finite(pa.array(out, pa.binary()).cast(pa.string()), evidence, types, b"".join(out), starts)


def _restore_non_finite(column: pa.Array, evidence: Sequence[dict], types, encoded: bytes, starts) -> pa.Array:
    """Labels orjson wrote a NaN or infinity of as `null`: encoded again by json, which writes them.

    Only a field whose declared type can hold a float can hold one (a
    floating-point type, a list, map or struct of one, or "json"):
    - a floating-point field's values are summed (at C speed; None and 0 left
      out), whose total is finite when none is a NaN or an infinity (or, as a
      closer look shows, when the sum overflowed); only otherwise are they
      checked value by value, through an Arrow array (summing each label's
      fields as it is added instead cost as much, in the labeler's loop);
    - any other such field is looked at in the labels whose text holds `null`
      alone, through its values' pickle (every plain float is a BINFLOAT opcode
      and its 8 bytes, scanned at C speed) and, only where that finds one,
      value by value.
    A value not of its declared type (a NaN in a field declared as an
    integer) is not looked for: it is stored as orjson wrote it, `null`. Values
    that are no plain float, list, tuple or dict never reach orjson as floats:
    `_like_json` checks them.

    `encoded` is the labels' text end to end, label i from `starts()[i]`.
    """
    kinds = types if types is not None else dict.fromkeys(set().union(*evidence), "json")
    hit, with_null, sub = np.zeros(len(evidence), bool), None, None
    for name, kind in kinds.items():
        if _is_float(kind):
            if not _finite_total(map(dict.get, evidence, repeat(name))):
                hit |= _non_finite_at(list(map(dict.get, evidence, repeat(name))), kind)
        elif _may_hold_float(kind):
            if with_null is None:  # found once, for every such field
                with_null = _labels_holding_null(encoded, starts, len(evidence))
                sub = [evidence[i] for i in with_null]
            if len(with_null):
                hit[with_null] |= _non_finite_at(list(map(dict.get, sub, repeat(name))), kind)
    if not hit.any():
        return column
    redo = np.flatnonzero(hit)
    return pc.replace_with_mask(column, pa.array(hit), pa.array([_JSON(evidence[i]) for i in redo], pa.string()))


def _is_float(kind: pa.DataType | str) -> bool:
    return isinstance(kind, pa.DataType) and pa.types.is_floating(kind)


def _finite_total(values) -> bool:
    """Whether the sum of `values` (None and zeros left out) is a finite number: then none is a NaN or inf."""
    try:
        return math.isfinite(sum(filter(None, values)))
    except (TypeError, ValueError, OverflowError):  # a value of another type: a closer look
        return False


def _labels_holding_null(encoded: bytes, starts, n: int) -> np.ndarray:
    nulls = _null_positions(encoded)
    if not len(nulls):
        return nulls
    return np.flatnonzero(np.bincount(np.searchsorted(starts(), nulls, side="right") - 1, minlength=n))


_NULL = np.frombuffer(b"null", np.uint32)[0]


def _null_positions(encoded: bytes) -> np.ndarray:
    """Where the 4 bytes `null` begin in `encoded`: four aligned passes of 4-byte words (a null token, or the
    text "null" inside a string: its label is then looked at for nothing)."""
    found = []
    for shift in range(4):
        words = (len(encoded) - shift) // 4
        if words > 0:
            found.append(np.flatnonzero(np.frombuffer(encoded, np.uint32, words, shift) == _NULL) * 4 + shift)
    return np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)


def _may_hold_float(kind: pa.DataType | str) -> bool:
    """Whether a field of this declared type can hold a float anywhere inside it ("json": any value)."""
    if not isinstance(kind, pa.DataType):
        return True
    if pa.types.is_floating(kind):
        return True
    if pa.types.is_map(kind):
        return _may_hold_float(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _may_hold_float(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_may_hold_float(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_dictionary(kind):
        return _may_hold_float(kind.value_type)
    return False


def _non_finite_at(values: list, kind: pa.DataType | str) -> np.ndarray:
    """Which of one field's values (None: absent or null) hold a NaN or an infinity."""
    if _is_float(kind):
        try:
            finite = pc.fill_null(pc.is_finite(pa.array(values, pa.float64())), True)  # None: no float
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            pass  # a value of another type: looked at as any value is
        else:
            return ~finite.to_numpy(zero_copy_only=False)
    if not _may_hold_non_finite(values):
        return np.zeros(len(values), bool)
    return np.fromiter((_has_non_finite(value) for value in values), bool, len(values))


def _may_hold_non_finite(values: list) -> bool:
    """False only when no plain float in `values` is a NaN or an infinity (read off their pickle)."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5)
    pickler.fast = True  # no memo: a third faster here (a cycle raises RecursionError: a closer look)
    try:
        pickler.dump(values)
    except Exception:  # something that does not pickle: look closer
        return True
    data = np.frombuffer(out.getbuffer(), np.uint8)
    floats = np.flatnonzero(data[:-8] == 0x47)  # "G": BINFLOAT (and any other 0x47 byte: a closer look at most)
    return bool(np.any(((data[floats + 1] & 0x7F) == 0x7F) & ((data[floats + 2] & 0xF0) == 0xF0)))  # exponent 1s


def _has_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False
