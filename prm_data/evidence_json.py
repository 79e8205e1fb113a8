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
  are encoded again with `json` (the output is scanned for `null`; only the
  labels holding one are looked at in Python);
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

import json
import math
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
CHUNK = 1 << 16  # labels per encoder call: bounds the buffer (and keeps int32 offsets) for any shard size


def _like_json(value):
    """What json.dumps(default=str) makes of a value orjson hands back: its number, list, dict or str."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # bools never get here: orjson writes them itself
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return str(value)


def encode_evidence(evidence: Sequence[dict]) -> pa.ChunkedArray:
    """Each dict of `evidence` as one JSON object, in order, as a string column."""
    chunks = [_encode_chunk(evidence[start:start + CHUNK]) for start in range(0, len(evidence), CHUNK)]
    return pa.chunked_array(chunks, pa.string())


def _encode_chunk(evidence: Sequence[dict]) -> pa.Array:
    n = len(evidence)
    items = [_SEPARATOR] * (2 * n - 1)
    items[::2] = evidence
    try:
        encoded = orjson.dumps(items, default=_like_json, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: some label needs json itself
        return _encode_one_by_one(evidence)
    separators = np.flatnonzero(np.frombuffer(encoded, np.uint8) == 0x1E)
    if len(separators) != n - 1:
        raise AssertionError(f"evidence encoder: {len(separators)} separators between {n} labels")
    if len(encoded) + 2 > np.iinfo(np.int32).max:
        raise ValueError(f"evidence encoder: {len(encoded)} bytes of evidence in {n} labels exceed a string column")
    # encoded = "[" label0 ",\x1e," label1 ... "]": label i begins 1 byte after the bracket or 2 after
    # separator i - 1; as values, each label runs on over the 3 bytes that follow it (the last: the bracket
    # and 2 bytes of padding), which one slice of every value then drops
    starts = np.empty(n + 1, np.int32)
    starts[0], starts[1:-1], starts[-1] = 1, separators + 2, len(encoded) + 2
    with_tails = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(starts), pa.py_buffer(encoded + b"  ")])
    column = pc.binary_slice(with_tails, 0, -3).view(pa.string())  # orjson writes valid UTF-8 only
    return _restore_non_finite(column, evidence, encoded, starts)


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

    `encoded` is the labels' text end to end, label i from `starts[i]`: only a
    label whose text holds `null` is looked at.
    """
    nulls, at = [], encoded.find(b"null")
    while at >= 0:
        nulls.append(at)
        at = encoded.find(b"null", at + 4)
    if not nulls:
        return column
    maybe = np.unique(np.searchsorted(starts, np.asarray(nulls), side="right") - 1)
    redo = [int(i) for i in maybe if _has_non_finite(evidence[i])]
    if not redo:
        return column
    mask = np.zeros(len(column), bool)
    mask[redo] = True
    return pc.replace_with_mask(column, pa.array(mask), pa.array([_JSON(evidence[i]) for i in redo], pa.string()))


def _has_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False
