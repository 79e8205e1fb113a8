"""Many evidence dicts to one Arrow string column of JSON text, in one encoder call.

The stored evidence of a step label is `json.dumps(evidence, sort_keys=True,
default=str)` (prm_data/records.py, `StepLabel.to_row`). Encoding one label at
a time costs a Python call per label (~5 us with `json`, ~2.4 us with orjson,
most of it the call itself); `encode_evidence` encodes a whole shard's evidence
in one `orjson.dumps` of a list in which a raw `0x1e` byte (an
`orjson.Fragment`, copied into the output as it is) separates the labels. No
encoded value can hold a raw `0x1e` (JSON escapes every control character in a
string), so numpy finds the boundaries, and the Arrow column is built from the
one output buffer (each label a slice of it) without a Python object per label.

The stored text means what `json.dumps` stored: the same value once parsed,
compact and with the keys in the order the labeler wrote them where json
sorted them and put a space after `:` and `,`:

- orjson writes NaN and infinities as `null` (json: `NaN`, `Infinity`): the
  labels whose text holds `null` and whose evidence holds a non-finite float
  are encoded again with `json` (only the labels whose text holds `null` are
  looked at, through their pickle, at C speed: `_restore_non_finite`);
- values orjson refuses (a non-`str` dict key, an int beyond 64 bits, a lone
  surrogate, a cycle) make the chunk fall back to one label at a time, each
  by orjson or else by `json` itself (which raises where it raised);
- subclasses of builtins, dataclasses and datetimes go through `_like_json`,
  which does what json does with them (a float or int subclass as its number,
  a namedtuple as a list, anything else as its `str`).

One difference remains, on purpose: a plain `Enum` member is stored as its
value (orjson), where json stored `str(member)`; an `IntEnum`/`StrEnum` is the
same either way.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = orjson.Fragment(b"\x1e")
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


def encode_evidence(evidence: Sequence[dict]) -> pa.ChunkedArray:
    """Each dict of `evidence` as one JSON object, in order, as a string column."""
    chunks = [part for start in range(0, len(evidence), CHUNK)
              for part in _encode_chunk(evidence[start:start + CHUNK])]
    return pa.chunked_array(chunks, pa.string())


def _encode_chunk(evidence: Sequence[dict]) -> list[pa.Array]:
    """The labels' JSON as one string array, or as several where one would pass a string array's 2 GiB."""
    n = len(evidence)
    items = [_SEPARATOR] * (2 * n - 1)
    items[::2] = evidence
    try:
        encoded = orjson.dumps(items, default=_like_json, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: some label needs json itself
        return [_encode_one_by_one(evidence)]
    if len(encoded) > MAX_BYTES and n > 1:  # too much text for one array: halves, each its own
        return _encode_chunk(evidence[:n // 2]) + _encode_chunk(evidence[n // 2:])
    separators = np.flatnonzero(np.frombuffer(encoded, np.uint8) == 0x1E)
    if len(separators) != n - 1 or len(encoded) > MAX_BYTES:  # an orjson.Fragment inside the evidence itself,
        return [_encode_one_by_one(evidence)]  # or one label of 2 GiB (pyarrow then says so)
    # encoded = "[" label0 ",\x1e," label1 ... "]": label i begins 1 byte after the bracket or 2 after
    # separator i - 1; as values, each label runs on over the 3 bytes that follow it (the last: the bracket
    # and 2 bytes of padding), which one slice of every value then drops
    starts = np.empty(n + 1, np.int32)
    starts[0], starts[1:-1], starts[-1] = 1, separators + 2, len(encoded) + 2
    with_tails = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(starts), pa.py_buffer(encoded + b"  ")])
    column = pc.binary_slice(with_tails, 0, -3).view(pa.string())  # orjson writes valid UTF-8 only
    return [_restore_non_finite(column, evidence, encoded, starts)]


def _encode_one_by_one(evidence: Sequence[dict]) -> pa.Array:
    out = []
    for value in evidence:
        try:
            out.append(orjson.dumps(value, default=_like_json, option=_OPTIONS))
        except TypeError:
            out.append(_JSON(value).encode())
    starts = np.zeros(len(out) + 1, np.int64)
    np.cumsum([len(text) for text in out], out=starts[1:])
    return _restore_non_finite(pa.array(out, pa.binary()).cast(pa.string()), evidence, b"".join(out), starts)


def _restore_non_finite(column: pa.Array, evidence: Sequence[dict], encoded: bytes, starts: np.ndarray) -> pa.Array:
    """Labels orjson wrote a NaN or infinity of as `null`: encoded again by json, which writes them.

    `encoded` is the labels' text end to end, label i from `starts[i]`. Only
    the labels whose text holds `null` can be such labels; whether any of them
    holds a non-finite float is read off their pickle (every plain float is a
    BINFLOAT opcode and its 8 big-endian bytes; values that are no plain float,
    list, tuple or dict never reach orjson as floats: `_like_json` checks
    them), at C speed. Only then is each of those labels parsed back and
    compared with its evidence: a real None reads back equal, a NaN does not
    (nor a tuple or a str()-ed object: json writes those again as it did).
    """
    if b"null" not in encoded:
        return column
    data = np.frombuffer(encoded, np.uint8)
    n_at = np.flatnonzero(data[:-3] == ord("n"))
    nulls = n_at[(data[n_at + 1] == ord("u")) & (data[n_at + 2] == ord("l")) & (data[n_at + 3] == ord("l"))]
    maybe = np.unique(np.searchsorted(starts, nulls, side="right") - 1)
    if not _may_hold_non_finite([evidence[i] for i in maybe]):
        return column
    read_back = orjson.loads("[" + ",".join(column.take(pa.array(maybe)).to_pylist()) + "]")
    redo = [int(i) for i, back in zip(maybe, read_back) if not _reads_back(back, evidence[i])]
    if not redo:
        return column
    mask = np.zeros(len(column), bool)
    mask[redo] = True
    return pc.replace_with_mask(column, pa.array(mask), pa.array([_JSON(evidence[i]) for i in redo], pa.string()))


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


def _reads_back(parsed, evidence: dict) -> bool:
    try:
        return bool(parsed == evidence)
    except (ValueError, TypeError):  # a value whose == is no bool (a numpy array): encode it again
        return False
