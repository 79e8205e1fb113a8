"""The `verifier_sft` export: critiques for fine-tuning a generative verifier (ThinkPRM / GenPRM style).

A generative PRM reads a problem and a numbered solution and writes a critique that
checks each step and ends it with a verdict (ThinkPRM, Khalifa et al., 2025,
arXiv:2504.16828; GenPRM, Zhao et al., 2025, arXiv:2504.00891). Both papers build
their training critiques from a verifier's own outputs and keep only those whose
step verdicts agree with the gold step labels. Here the critics are the run's judges
(each voting judgment, with whatever the judge wrote about each step) and the tool
verifier (what it checked, with the computed and claimed values), the gold labels
are the final labels of the `stepwise` export, and a candidate is kept only when it
gives a verdict for every exported step and every verdict equals the final label.

Candidates come from warehouse/queries/export_verifier_candidates.sql (the judges) and
export_verifier_tool_steps.sql (the tool verifier, lined up with the steps here). Each kept
row is a chat conversation (`messages`: system, user, assistant) ready for SFT: the
system and user text come from prompts/verifier_critique.v1.jinja, the assistant's
critique has one paragraph per step ending in `The step is \\boxed{correct}.` or
`\\boxed{incorrect}`, and a closing line. The card counts candidates, kept rows and
each reason a candidate was not kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prm_data.exports.latest_rows import latest_per_key
from prm_data.exports.step_offsets import list_offsets
from prm_data.prompts import render
from prm_data.warehouse import Warehouse, load_query, retry_torn_reads

PROMPT_VERSION = "verifier_critique.v1"
_MARK = "\x00{}\x00"  # stands in for a row's text while the template renders once
_STEP_MARKER = r"^\s*(?:\*\*)?[Ss]tep\s*\d+\s*(?:\*\*)?\s*[:.)]\s*"  # as prm_data/steps.py's step_k policy


def _byte_set(chars: bytes) -> np.ndarray:
    table = np.zeros(256, bool)
    table[list(chars)] = True
    return table


_SPACE = _byte_set(b" \t\n\v\f\r")  # RE2's \s, and \v to be safe (such a text then goes through the regex)
_MARKER_FIRST = _byte_set(b" \t\n\v\f\r*Ss")  # the bytes a text matching _STEP_MARKER can begin with
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
REASONS = ("kept", "no_verdict_for_a_step", "disagrees_with_final_labels", "same_critique_as_a_kept_one")


def candidates(warehouse: Warehouse, stepwise: pa.Table) -> pa.Table:
    """Every candidate critique of these stepwise rows (one per voting judgment and one per tool-checked
    rollout): `row` (its stepwise row), `critic`, `judgment_id`, `verdicts` and `notes` per exported step."""
    num_steps = pc.list_value_length(stepwise["completions"])
    offsets = np.r_[0, np.cumsum(np.asarray(num_steps.to_numpy(), np.int64))]
    con = warehouse.connect()
    try:
        con.register("stepwise_export", pa.table({
            "row": pa.array(np.arange(stepwise.num_rows), pa.int64()), "rollout_id": stepwise["rollout_id"],
            "num_steps": num_steps}))
        sql = load_query("export_verifier_tool_steps")
        tool = _tool_steps(retry_torn_reads(lambda: con.sql(sql).to_arrow_table()), offsets)
        con.register("tool_notes", pa.table({"row": pa.array(np.arange(stepwise.num_rows), pa.int64()),
                                             "notes": tool["notes"]}))
        sql = load_query("export_verifier_candidates")
        judges = retry_torn_reads(lambda: con.sql(sql).to_arrow_table())
    finally:
        con.close()
    steps, judge_offsets = list_offsets(judges["per_step"])
    as_list = lambda field: pa.ListArray.from_arrays(pa.array(judge_offsets, pa.int32()),  # noqa: E731
                                                     pc.struct_field(steps, field))
    judges = judges.drop_columns(["per_step"]).append_column("verdicts", as_list("verdict")).append_column(
        "notes", as_list("note"))
    checked = tool.filter(pc.greater(tool["checked_steps"], 0)).drop_columns(["checked_steps"])
    return pa.concat_tables([judges, checked.select(judges.column_names).cast(judges.schema)])


def _tool_steps(results: pa.Table, offsets: np.ndarray) -> pa.Table:
    """The tool verifier's results (export_verifier_tool_steps.sql) lined up with every stepwise row's
    exported steps: per row `verdicts` (NULL where it gave none), `notes` ('' where it checked nothing)
    and `checked_steps`, the steps it labelled; where several runs labelled a step, the greatest run_id."""
    rows = np.asarray(results["row"].to_numpy(), np.int64)
    position = offsets[rows] + np.asarray(results["step_index"].to_numpy(), np.int64)  # in the flat steps
    total, n = int(offsets[-1]), len(offsets) - 1
    keep = _one_per_step(position, results["run_id"], total)
    source = np.full(total, -1, np.int64)  # per exported step, its result's row in `results`, or -1
    source[position[keep]] = keep
    take = pa.array(source, mask=source < 0)
    verdicts = results["verdict"].combine_chunks().take(take)
    notes = pc.fill_null(results["checked"].combine_chunks().take(take), "")
    offsets32 = pa.array(offsets, pa.int32())
    return pa.table({
        "row": pa.array(np.arange(n), pa.int64()),
        "critic": pa.repeat(pa.scalar("tool_verify", pa.string()), n),
        "judgment_id": pa.nulls(n, pa.string()),
        "verdicts": pa.ListArray.from_arrays(offsets32, verdicts),
        "notes": pa.ListArray.from_arrays(offsets32, notes),
        "checked_steps": pa.array(np.bincount(rows[keep], minlength=n), pa.int64()),
    })


def _one_per_step(position: np.ndarray, runs: pa.ChunkedArray, total: int) -> np.ndarray:
    """The results kept, one per flat step (`position`), in any order: all of them when no step has two
    (one run labelled the export: a count per step, not the sort `latest_per_key` needs, 0.1 s at 10M
    step labels), else the latest run's of each."""
    if not len(position) or np.bincount(position, minlength=total).max() <= 1:
        return np.arange(len(position))
    return latest_per_key(position, runs)


def _template() -> tuple[str, tuple[str, str, str]]:
    """The system text, and the user text split around the question and the solution."""
    rendered = render(PROMPT_VERSION, question=_MARK.format("q"), solution=_MARK.format("s"))
    system = next((m.content for m in rendered.messages if m.role == "system"), "")
    user = rendered.messages[-1].content
    before, rest = user.split(_MARK.format("q"))
    middle, after = rest.split(_MARK.format("s"))
    return system, (before, middle, after)


def reasons_of(candidates: pa.Table, labels: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per candidate, the index in REASONS of: kept, no_verdict_for_a_step or disagrees_with_final_labels
    (ThinkPRM's filter); `labels` are the final labels of each candidate's steps."""
    verdicts, offsets = list_offsets(candidates["verdicts"])
    labels, _ = list_offsets(labels)
    rollout = np.repeat(np.arange(candidates.num_rows), np.diff(offsets))
    out = np.zeros(candidates.num_rows, np.int8)
    wrong = pc.fill_null(pc.not_equal(verdicts, labels), False)
    out[rollout[np.asarray(wrong.to_numpy(zero_copy_only=False), bool)]] = 2
    out[rollout[np.asarray(verdicts.is_null().to_numpy(zero_copy_only=False), bool)]] = 1
    return out


def _numbers(offsets: np.ndarray) -> np.ndarray:
    """Each flat step's number within its row: 1, 2, ..."""
    return np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], np.diff(offsets)) + 1


def _string_bytes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The character data of a string array and each string's start and end in it (int64)."""
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    bounds = np.frombuffer(strings.buffers()[1], width, len(strings) + 1,
                           strings.offset * np.dtype(width).itemsize).astype(np.int64)
    data = strings.buffers()[2]
    return (np.frombuffer(data, np.uint8) if data is not None and len(data) else np.zeros(1, np.uint8)), bounds


def _begins_with_own_marker(strings: pa.Array, numbers: np.ndarray) -> np.ndarray:
    """Per row, whether `strings[i]` begins with exactly `Step <numbers[i]>: ` followed by no ASCII whitespace
    (then `_STEP_MARKER` matches that prefix and nothing more); False for null rows. numpy over every row,
    one byte position at a time."""
    data, bounds = _string_bytes(strings)
    starts, lengths, last = bounds[:-1], np.diff(bounds), len(data) - 1
    digits, power = np.ones(len(numbers), np.int64), 10
    while len(numbers) and power <= numbers.max():
        digits += numbers >= power
        power *= 10
    size = 7 + digits  # "Step " + digits + ": "
    ok = (lengths >= size) & np.asarray(strings.is_valid().to_numpy(zero_copy_only=False), bool)
    at = lambda j: data[np.minimum(starts + j, last)]  # noqa: E731 - the byte j of each string (clipped)
    for j, byte in enumerate(b"Step "):
        ok &= at(j) == byte
    for m in range(int(digits.max()) if len(digits) else 0):  # the m-th digit, where the number has one
        digit = (numbers // 10 ** np.maximum(digits - 1 - m, 0)) % 10 + ord("0")
        ok &= (m >= digits) | (at(5 + m) == digit)
    ok &= (at(5 + digits) == ord(":")) & (at(6 + digits) == ord(" "))
    return ok & ((lengths == size) | ~_SPACE[at(size)])


def _solution_lines(steps_flat: pa.Array, numbers: np.ndarray) -> pa.Array:
    """`Step k: <text>` per flat step (k = `numbers`), the step's own leading marker (`_STEP_MARKER`) removed.

    The regex costs most of this on a large export, and most texts need none: a text that begins with
    exactly its own `Step k: ` (then no whitespace) is already its line, and one whose first byte cannot
    begin a marker keeps its text after `Step k: `; only the others go through the regex, with the same result.
    """
    own = _begins_with_own_marker(steps_flat, numbers)
    if own.all():
        return steps_flat
    data, bounds = _string_bytes(steps_flat)
    first = np.where(np.diff(bounds) > 0, data[np.minimum(bounds[:-1], len(data) - 1)], 0)
    regex = ~own & _MARKER_FIRST[first]
    body = steps_flat
    if regex.any():
        rows = np.flatnonzero(regex)
        stripped = pc.replace_substring_regex(steps_flat.take(pa.array(rows)), _STEP_MARKER, "", max_replacements=1)
        index = np.arange(len(steps_flat))
        index[rows] = len(steps_flat) + np.arange(len(rows))
        body = pa.concat_arrays([steps_flat, stripped]).take(pa.array(index))
    prefixes = pc.binary_join_element_wise("Step ", pc.cast(pa.array(numbers), pa.string()), ": ", "")
    return pc.binary_join_element_wise(pc.if_else(pa.array(own), "", prefixes), body, "")


def build_verifier_rows(warehouse: Warehouse, stepwise: pa.Table) -> tuple[pa.Table, dict]:
    """The `verifier_sft` rows of these stepwise rows, and what the card says about them."""
    cands = candidates(warehouse, stepwise)
    reasons = reasons_of(cands, stepwise["labels"].take(cands["row"]))
    kept = cands.filter(pa.array(reasons == 0)).sort_by(  # the query leaves rows unordered
        [("row", "ascending"), ("critic", "ascending"), ("judgment_id", "ascending")])
    kept, repeats = _drop_repeats(kept)
    # each column made one chunk, then taken: a take from the query's chunks costs 3-8x more for the steps
    at = kept["row"].combine_chunks()
    rows = pa.table({name: stepwise[name].combine_chunks().take(at)
                     for name in ("problem_id", "rollout_id", "prompt", "completions")})
    system, (before, middle, after) = _template()
    steps_flat, offsets = list_offsets(rows["completions"])
    step_numbers = _numbers(offsets)
    numbers = pc.cast(pa.array(step_numbers), pa.string())
    lines = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _solution_lines(steps_flat, step_numbers))
    solution = pc.binary_join(lines, "\n")
    user = (before, rows["prompt"].combine_chunks(), middle, solution, after)  # joined in _messages
    table = pa.table({
        "problem_id": rows["problem_id"],
        "rollout_id": rows["rollout_id"],
        "critic": kept["critic"],
        "messages": _messages(system, user, _critiques(kept, numbers, offsets)),
        "step_verdicts": kept["verdicts"],
        "num_steps": pa.array(np.diff(offsets), pa.int32()),
    })
    by_reason = dict(zip(REASONS, np.bincount(reasons, minlength=len(REASONS)).tolist()))
    by_reason["kept"] -= repeats
    by_reason[REASONS[3]] = repeats
    critics = pc.value_counts(cands["critic"]).to_pylist() if cands.num_rows else []
    card = {"prompt_version": PROMPT_VERSION, "candidates": cands.num_rows, "kept": by_reason.pop("kept"),
            "not_kept": by_reason, "candidates_by_critic": {c["values"]: c["counts"] for c in critics},
            "filter": "kept only when the critique gives a verdict for every exported step and every verdict "
                      "equals the step's final label"}
    return table, card


def _critiques(kept: pa.Table, numbers: pa.Array, offsets: np.ndarray) -> tuple[pa.Array, str, pa.Array]:
    """The assistant's text per row, in pieces for `_messages` to join: one paragraph per step ending in its
    boxed verdict, the blank line, the closing line."""
    verdicts, _ = list_offsets(kept["verdicts"])
    notes, _ = list_offsets(kept["notes"])
    verdict = pc.if_else(verdicts, "The step is \\boxed{correct}.", "The step is \\boxed{incorrect}.")
    space = pc.if_else(pc.greater(pc.binary_length(notes), 0), " ", "")  # after a note, before the verdict
    paragraphs = pc.binary_join_element_wise("Step ", numbers, ": ", notes, space, verdict, "")
    body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), paragraphs), "\n\n")
    first_bad = _first_false(np.asarray(verdicts.to_numpy(zero_copy_only=False), bool), offsets)
    closing = pc.if_else(pa.array(first_bad < 0),
                         pc.binary_join_element_wise("All ", pc.cast(pa.array(np.diff(offsets)), pa.string()),
                                                     " steps are correct.", ""),
                         pc.binary_join_element_wise("The first incorrect step is step ",
                                                     pc.cast(pa.array(first_bad + 1), pa.string()), ".", ""))
    return body, "\n\n", closing


def _drop_repeats(kept: pa.Table) -> tuple[pa.Table, int]:
    """Keep one of the equal critiques of a rollout (a judge that wrote only verdicts says what the tool says);
    the others are counted as `same_critique_as_a_kept_one`. Only rollouts with several kept rows are compared."""
    row = np.asarray(kept["row"].to_numpy(), np.int64)
    several = np.flatnonzero(np.bincount(row)[row] > 1) if len(row) else np.zeros(0, np.int64)
    if not len(several):
        return kept, 0
    sub = kept.take(pa.array(several))
    key = pa.table({"row": sub["row"], "verdicts": pc.binary_join(pc.cast(sub["verdicts"], pa.list_(pa.string())), ","),
                    "notes": pc.binary_join(sub["notes"], "\x1f"), "i": pa.array(several)})
    first = np.asarray(key.group_by(["row", "verdicts", "notes"], use_threads=False).aggregate([("i", "min")])
                       ["i_min"].to_numpy(), np.int64)
    repeats = np.setdiff1d(several, first)
    return kept.filter(pa.array(~np.isin(np.arange(kept.num_rows), repeats))), len(repeats)


def _first_false(verdicts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row, the index of its first False verdict, -1 when none."""
    out = np.full(len(offsets) - 1, -1, np.int64)
    bad = np.flatnonzero(~verdicts)
    rows = np.searchsorted(offsets, bad, side="right") - 1
    first_rows, first = np.unique(rows, return_index=True)
    out[first_rows] = bad[first] - offsets[first_rows]
    return out


def _messages(system: str, user: tuple, assistant: tuple) -> pa.Array:
    """A list<struct<role, content>> column: system, user, assistant per row.

    `user` and `assistant` are the pieces of each message (strings and string arrays). Every row's
    three texts are joined into one string array, and its offsets are cut again at the message
    boundaries, so each text is copied once (a join per message and a take to interleave them copied
    it three times: a second of the export at 400k rows).
    """
    n = len(next(piece for piece in assistant if not isinstance(piece, str)))
    joined = pc.binary_join_element_wise(system, *user, *assistant, "")
    if joined.null_count:
        raise ValueError("a verifier_sft message has no text (a null problem or step)")
    lengths = [np.full(n, len(system.encode()), np.int64), _piece_lengths(user, n)]
    starts = np.frombuffer(joined.buffers()[1], np.int32, n + 1, joined.offset * 4).astype(np.int64)
    cuts = np.stack([starts[:-1], starts[:-1] + lengths[0], starts[:-1] + lengths[0] + lengths[1]], axis=1)
    offsets = np.r_[cuts.ravel(), starts[-1]].astype(np.int32)
    contents = pa.StringArray.from_buffers(3 * n, pa.py_buffer(offsets), joined.buffers()[2])
    roles = pa.array(["system", "user", "assistant"], pa.string()).take(pa.array(np.tile(np.arange(3), n)))
    structs = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * n + 1, 3), pa.int32()), structs)


def _piece_lengths(pieces: tuple, n: int) -> np.ndarray:
    """Per row, the bytes of one message joined from `pieces` (strings and string arrays)."""
    total = np.zeros(n, np.int64)
    for piece in pieces:
        total += (len(piece.encode()) if isinstance(piece, str)
                  else np.asarray(pc.binary_length(piece).to_numpy(), np.int64))
    return total
