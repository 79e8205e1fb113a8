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

Candidates come from warehouse/queries/export_verifier_candidates.sql. Each kept
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

from prm_data.exports.step_offsets import list_offsets
from prm_data.prompts import render
from prm_data.warehouse import Warehouse, load_query, retry_torn_reads

PROMPT_VERSION = "verifier_critique.v1"
_MARK = "\x00{}\x00"  # stands in for a row's text while the template renders once
_STEP_MARKER = r"^\s*(?:\*\*)?[Ss]tep\s*\d+\s*(?:\*\*)?\s*[:.)]\s*"  # as prm_data/steps.py's step_k policy
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
REASONS = ("kept", "no_verdict_for_a_step", "disagrees_with_final_labels", "same_critique_as_a_kept_one")


def candidates(warehouse: Warehouse, stepwise: pa.Table) -> pa.Table:
    """Every candidate critique of these stepwise rows (one per voting judgment and one per tool-checked rollout)."""
    con = warehouse.connect()
    try:
        con.register("stepwise_export", stepwise.select(["problem_id", "rollout_id", "prompt", "completions",
                                                         "labels"]))
        sql = load_query("export_verifier_candidates")
        return retry_torn_reads(lambda: con.sql(sql).to_arrow_table())
    finally:
        con.close()


def _template() -> tuple[str, tuple[str, str, str]]:
    """The system text, and the user text split around the question and the solution."""
    rendered = render(PROMPT_VERSION, question=_MARK.format("q"), solution=_MARK.format("s"))
    system = next((m.content for m in rendered.messages if m.role == "system"), "")
    user = rendered.messages[-1].content
    before, rest = user.split(_MARK.format("q"))
    middle, after = rest.split(_MARK.format("s"))
    return system, (before, middle, after)


def reasons_of(candidates: pa.Table) -> np.ndarray:
    """Per candidate: kept, no_verdict_for_a_step or disagrees_with_final_labels (ThinkPRM's filter)."""
    verdicts, offsets = list_offsets(candidates["verdicts"])
    labels, _ = list_offsets(candidates["labels"])
    rollout = np.repeat(np.arange(candidates.num_rows), np.diff(offsets))
    missing = np.zeros(candidates.num_rows, bool)
    missing[rollout[np.asarray(verdicts.is_null().to_numpy(zero_copy_only=False), bool)]] = True
    differs = np.zeros(candidates.num_rows, bool)
    wrong = pc.fill_null(pc.not_equal(verdicts, labels), False)
    differs[rollout[np.asarray(wrong.to_numpy(zero_copy_only=False), bool)]] = True
    return np.where(missing, REASONS[1], np.where(differs, REASONS[2], REASONS[0]))


def _numbered(steps_flat: pa.Array, offsets: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """`Step k: ` numbers of each flat step, and its text without a `Step k:` marker of its own."""
    index = np.arange(len(steps_flat)) - np.repeat(offsets[:-1], np.diff(offsets))
    numbers = pc.cast(pa.array(index + 1), pa.string())
    return numbers, pc.replace_substring_regex(steps_flat, _STEP_MARKER, "", max_replacements=1)


def build_verifier_rows(warehouse: Warehouse, stepwise: pa.Table) -> tuple[pa.Table, dict]:
    """The `verifier_sft` rows of these stepwise rows, and what the card says about them."""
    cands = candidates(warehouse, stepwise)
    reasons = reasons_of(cands).astype(object)
    kept = cands.filter(pa.array(reasons == REASONS[0])).sort_by(
        [("problem_id", "ascending"), ("rollout_id", "ascending"), ("critic", "ascending"),
         ("judgment_id", "ascending")])  # the query leaves rows unordered; the first of equal critiques stays
    system, (before, middle, after) = _template()
    steps_flat, offsets = list_offsets(kept["completions"])
    numbers, texts = _numbered(steps_flat, offsets)
    lists = lambda flat, sep: pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat), sep)  # noqa: E731
    solution = lists(pc.binary_join_element_wise("Step ", numbers, ": ", texts, ""), "\n")
    user = pc.binary_join_element_wise(before, kept["prompt"].combine_chunks(), middle, solution, after, "")
    verdicts, _ = list_offsets(kept["verdicts"])
    notes, _ = list_offsets(kept["notes"])
    word = pc.if_else(verdicts, "correct", "incorrect")
    notes = pc.if_else(pc.equal(pc.utf8_length(notes), 0), "", pc.binary_join_element_wise(notes, " ", ""))
    paragraphs = pc.binary_join_element_wise("Step ", numbers, ": ", notes, "The step is \\boxed{", word, "}.", "")
    n_steps = np.diff(offsets)
    first_bad = _first_false(np.asarray(verdicts.to_numpy(zero_copy_only=False), bool), offsets)
    closing = pa.array([f"All {n} steps are correct." if b < 0 else f"The first incorrect step is step {b + 1}."
                        for n, b in zip(n_steps.tolist(), first_bad.tolist())], pa.string())
    assistant = pc.binary_join_element_wise(lists(paragraphs, "\n\n"), closing, "\n\n")
    # judges that wrote nothing beyond their verdicts give the same critique as the tool verifier: keep one
    first = (pa.table({"rollout_id": kept["rollout_id"], "critique": assistant, "i": np.arange(kept.num_rows)})
             .group_by(["rollout_id", "critique"], use_threads=False).aggregate([("i", "min")])["i_min"])
    unique = np.sort(np.asarray(first.to_numpy(), np.int64))
    reasons[np.flatnonzero(reasons == REASONS[0])[np.setdiff1d(np.arange(kept.num_rows), unique)]] = REASONS[3]
    kept, user, assistant, n_steps = kept.take(unique), user.take(unique), assistant.take(unique), n_steps[unique]
    table = pa.table({
        "problem_id": kept["problem_id"],
        "rollout_id": kept["rollout_id"],
        "critic": kept["critic"],
        "messages": _messages(system, user, assistant),
        "step_verdicts": kept["verdicts"],
        "num_steps": pa.array(n_steps, pa.int32()),
    })
    names, counts = np.unique(reasons, return_counts=True)
    by_reason = {r: 0 for r in REASONS} | dict(zip(names.tolist(), counts.tolist()))
    critics = pc.value_counts(cands["critic"]).to_pylist() if cands.num_rows else []
    card = {"prompt_version": PROMPT_VERSION, "candidates": cands.num_rows, "kept": by_reason.pop("kept"),
            "not_kept": by_reason, "candidates_by_critic": {c["values"]: c["counts"] for c in critics},
            "filter": "kept only when the critique gives a verdict for every exported step and every verdict "
                      "equals the step's final label"}
    return table, card


def _first_false(verdicts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row, the index of its first False verdict, -1 when none."""
    out = np.full(len(offsets) - 1, -1, np.int64)
    bad = np.flatnonzero(~verdicts)
    rows = np.searchsorted(offsets, bad, side="right") - 1
    first_rows, first = np.unique(rows, return_index=True)
    out[first_rows] = bad[first] - offsets[first_rows]
    return out


def _messages(system: str, user: pa.Array, assistant: pa.Array) -> pa.Array:
    """A list<struct<role, content>> column: system, user, assistant per row."""
    n = len(user)
    contents = pa.concat_arrays([pa.array([system] * n, pa.string()), user, assistant])
    order = np.stack([np.arange(n), np.arange(n) + n, np.arange(n) + 2 * n], axis=1).ravel()
    roles = pa.array(np.tile(np.array(["system", "user", "assistant"], object), n), pa.string())
    structs = pa.StructArray.from_arrays([roles, contents.take(pa.array(order))], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * n + 1, 3), pa.int32()), structs)
