"""Where each step ends in a solution's response text: character offsets and token positions.

An RL trainer places a step's reward on a token of the response. The export writes
the response (the steps joined by the step separator) and, per step, the character
offset where the step ends (exclusive) and, for a named tokenizer, the index of the
response token that holds the step's last character, in the response tokenized on
its own without special tokens (`tokenizer(response, add_special_tokens=False)`).
A chat template puts the response after the prompt's tokens: add their number.
Everything is computed over the whole export at once (numpy over flat arrays), never
one Python object per step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class TokenizerUnavailable(ValueError):
    """The named tokenizer is not a local tokenizer folder or GGUF file (nothing is downloaded)."""


def list_offsets(lists: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The flat values of a list column and its offsets (length rows + 1, from 0)."""
    arr = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    if arr.null_count:
        raise ValueError("a list column of the export has null rows")
    offsets = np.asarray(arr.offsets, np.int64)
    flat = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
    return flat, offsets - offsets[0]


def join_responses(steps: pa.ChunkedArray | pa.Array, separator: str) -> pa.Array:
    """Each rollout's steps joined by `separator`: the response the offsets refer to."""
    arr = steps.combine_chunks() if isinstance(steps, pa.ChunkedArray) else steps
    return pc.binary_join(arr, separator)


def step_end_chars(steps: pa.ChunkedArray | pa.Array, separator: str) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the character offset in its response where the step ends (exclusive); and the list offsets."""
    flat, offsets = list_offsets(steps)
    lengths = np.asarray(pc.utf8_length(flat).to_numpy(zero_copy_only=False), np.int64)
    with_sep = np.cumsum(lengths + len(separator))
    starts = np.r_[0, with_sep][offsets[:-1]]  # cumulative length before each rollout's first step
    rollout = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return with_sep - starts[rollout] - len(separator), offsets


@lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """A fast tokenizer from a local folder or a .gguf file's vocabulary (local files only)."""
    from transformers import AutoTokenizer

    p = Path(name)
    try:
        if p.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
        else:
            tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TokenizerUnavailable(f"tokenizer {name!r} could not be loaded from local files: "
                                   f"{str(exc).splitlines()[0]}") from None
    if not tok.is_fast:
        raise TokenizerUnavailable(f"tokenizer {name!r} is not a fast tokenizer (character offsets need one)")
    return tok


def step_end_tokens(responses: pa.Array, end_chars: np.ndarray, offsets: np.ndarray, tokenizer) -> np.ndarray:
    """Per step, the index of the response token holding the step's last character.

    `tokenizer` is a transformers fast tokenizer; its offset mapping gives each
    token's character span. A token that spans the step's end and the separator
    after it is the step's last token. A step with no characters gets the token
    before it (or 0).
    """
    texts = responses.to_pylist()
    encodings = tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)
    counts = np.fromiter((len(e.offsets) for e in encodings), np.int64, len(encodings))
    starts = np.fromiter((s for e in encodings for s, _ in e.offsets), np.int64, int(counts.sum()))
    # one sorted array over the whole export: each response's token starts shifted past the previous responses
    char_base = np.r_[0, np.cumsum(np.asarray(pc.utf8_length(responses).to_numpy(zero_copy_only=False),
                                              np.int64) + 1)]
    token_base = np.r_[0, np.cumsum(counts)]
    token_rollout = np.repeat(np.arange(len(counts)), counts)
    global_starts = starts + char_base[token_rollout]
    rollout = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    last_char = np.maximum(end_chars - 1, 0) + char_base[rollout]
    index = np.searchsorted(global_starts, last_char, side="right") - 1 - token_base[rollout]
    return np.clip(index, 0, None)
