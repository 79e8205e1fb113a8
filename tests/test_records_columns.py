"""Labels filled column by column are stored exactly as the one-`StepLabel`-per-step path stored them.

Specifications:
- for every labeler (Monte Carlo, OmegaPRM, sibling, progress, tool checks,
  judge votes in both modes; each fills a `StepLabels`), run on the simulator: the shard the
  label stage writes from its columns holds the same rows as the shard written
  from the same labels as `StepLabel` objects (`labels_table`, one json.dumps
  per label): every column equal, and the evidence equal as parsed JSON, ints
  staying ints, floats floats, absent fields absent, nulls null;
- a label may leave declared evidence fields out, hold nulls, quotes, newlines,
  non-ASCII text and NaN; a field it was not declared with is refused with its
  name and nothing is added;
- evidence the fast encoder cannot write as json did (NaN and infinities deep
  inside, int dict keys, ints beyond 64 bits, lone surrogates, numpy numbers,
  namedtuples, sets, datetimes) is stored as the row path stored it, across
  encoder chunks; a count that is no integer of its column's range, or a
  required column left null, is refused naming the column, and nothing is added;
- every labeler's evidence values have the types its `EVIDENCE` declares;
- the columns read back as `StepLabel`s (what tests, audits and aggregation read).
"""

from __future__ import annotations

import collections
import datetime
import enum
import json
import sys
from pathlib import Path

import numpy as np

import pyarrow as pa
import pytest

from prm_data.labelers.judge_vote import JudgeSpec, JudgeVoteConfig, judge_solutions
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm
from prm_data.labelers.progress import ProgressConfig, label_progress
from prm_data.labelers.sibling import SiblingConfig, label_sibling
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.labelers.tool_verify import label_tool_verify
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data import evidence_json
from prm_data.records import JSON, StepLabel, StepLabels, labels_table
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse


def canonical(evidence: str) -> str:
    """The parsed JSON, written back with sorted keys: 1 and 1.0, true and 1, null and absent all differ."""
    return json.dumps(json.loads(evidence), sort_keys=True)


def stored_both_ways(tmp_path, labels: StepLabels) -> tuple[list[dict], list[dict]]:
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("step_labels", labels.table("run"), run_id="run", shard="columns")
    wh.write_shard("step_labels", labels_table(list(labels), "run"), run_id="run", shard="objects")
    read = ("SELECT * FROM read_parquet(?) ORDER BY rollout_id, step_index")
    return ([wh.query(read, [str(wh.shard_path("step_labels", "run", shard))]).to_pylist()
             for shard in ("columns", "objects")])


def assert_declared_types_hold(labels: StepLabels) -> None:
    """Every evidence value has the Arrow type its labeler declares for the field (JSON: any)."""
    for name, kind in labels.evidence_types.items():
        if kind != JSON:
            pa.array([label.evidence[name] for label in labels if name in label.evidence], kind)


def assert_same_rows(tmp_path, labels: StepLabels) -> list[dict]:
    assert_declared_types_hold(labels)
    columns, objects = stored_both_ways(tmp_path, labels)
    assert len(columns) == len(objects) == len(labels) > 0
    for a, b in zip(columns, objects):
        assert {k: v for k, v in a.items() if k != "evidence"} == {k: v for k, v in b.items() if k != "evidence"}
        assert canonical(a["evidence"]) == canonical(b["evidence"])
    return columns


def sim_solutions(count: int, seed: int):
    return sim_rollouts(count, per_problem=3, error_rate=0.3, seed=seed)


@pytest.mark.parametrize("label", [
    lambda rs: label_mc_value(rs, Completer(LLMClient(SimBackend(error_rate=0.2))), MCValueConfig(k=4)),
    lambda rs: label_mc_value(rs, Completer(LLMClient(SimBackend(error_rate=0.2))),
                              MCValueConfig(k=4, early_stop=True)),
    lambda rs: label_omega_prm(rs, Completer(LLMClient(SimBackend(error_rate=0.2))), OmegaPRMConfig()),
    lambda rs: label_sibling(rs, Completer(LLMClient(SimBackend(error_rate=0.2))), SiblingConfig(k=3)),
    lambda rs: label_progress(rs, Completer(LLMClient(SimBackend(error_rate=0.2))), ProgressConfig(k=4, max_k=12)),
], ids=["mc_value", "mc_value_early_stop", "omega_prm", "sibling", "progress"])
def test_monte_carlo_labels_are_stored_the_same_from_columns(tmp_path, label):
    labels = label([r.as_rollout_steps() for r in sim_solutions(6, seed=3)])
    assert isinstance(labels, StepLabels)
    assert_same_rows(tmp_path, labels)


def test_omega_prm_labels_leave_the_estimate_fields_out_where_no_estimate_was_made(tmp_path):
    rollouts = [r.as_rollout_steps() for r in sim_solutions(6, seed=4)]
    labels = label_omega_prm(rollouts, Completer(LLMClient(SimBackend(error_rate=0.2))), OmegaPRMConfig())
    rows = assert_same_rows(tmp_path, labels)
    evidence = [json.loads(r["evidence"]) for r in rows]
    assert any(e["estimated"] for e in evidence) and not all(e["estimated"] for e in evidence)
    assert all(("samples_saved" in e) == e["estimated"] for e in evidence)
    assert any(e["first_error_found"] is None and e["search_bounds"][1] is None for e in evidence)  # nulls stay


def test_tool_check_labels_are_stored_the_same_from_columns(tmp_path):
    labels = label_tool_verify([r.solution for r in sim_solutions(10, seed=5)])
    rows = assert_same_rows(tmp_path, labels)
    assert {json.loads(r["evidence"])["verdict"] for r in rows} >= {"verified", "contradicted"}


@pytest.mark.parametrize("mode", ["per_step", "first_error"])
def test_judge_labels_are_stored_the_same_from_columns(tmp_path, mode):
    judges = (JudgeSpec(name="a", samples=3), JudgeSpec(name="b", samples=1, weight=0.5))
    clients = {j.name: LLMClient(SimBackend(model=f"sim-judge-{j.name}", judge_accuracy=0.7)) for j in judges}
    result = judge_solutions([r.solution for r in sim_solutions(6, seed=6)], clients,
                             JudgeVoteConfig(mode=mode, judges=judges), "run")
    rows = assert_same_rows(tmp_path, result.labels)
    evidence = [json.loads(r["evidence"]) for r in rows]
    assert all(e["fleiss_kappa_batch"] == result.fleiss_kappa for e in evidence)
    assert all(set(e["judges"]) == {"a", "b"} for e in evidence)
    assert any("first_error_votes" in e for e in evidence) == (mode == "first_error")


ODD = {"name": pa.string(), "count": pa.int64(), "share": pa.float64(), "flag": pa.bool_(),
       "bounds": pa.list_(pa.int64()), "votes": pa.map_(pa.string(), pa.int64()), "records": JSON}


def test_absent_fields_nulls_odd_text_and_nan_are_stored_as_the_objects_stored_them(tmp_path):
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 0.5, True, 0.9, 3, 4, 1, {"name": 'a "quoted"\nline \\ é ∑ \x01', "count": 3,
                                                      "share": float("nan"), "flag": False, "bounds": [1, None],
                                                      "votes": {"x": 2}, "records": [{"k": None}, {"j": 1.5}]})
    labels.add("p", "r", 1, None, None, evidence={"count": None, "share": 1.0})
    labels.add("p", "r", 2, 0.0, False)
    rows = assert_same_rows(tmp_path, labels)
    assert json.loads(rows[1]["evidence"]) == {"count": None, "share": 1.0}
    assert rows[2]["evidence"] == "{}"


Pair = collections.namedtuple("Pair", "low high")


def test_evidence_the_fast_encoder_cannot_write_is_stored_as_json_wrote_it_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(evidence_json, "CHUNK", 3)  # several encoder calls, each falling back on its own
    hard = [{"records": Pair(1, 2)}, {"records": {3, 4}}, {"records": datetime.datetime(2026, 1, 2, 3, 4)},
            {"records": [{"deep": [1.0, float("nan")]}]}, {"records": {"inf": float("-inf"), "none": None}},
            {"records": None, "count": 1},  # a fast chunk with real nulls and non-finite floats
            {"records": {1: "int key"}}, {"records": 2 ** 70}, {"records": "lone \ud800 surrogate"},  # refused
            {"records": [np.float64(0.25), np.int64(3), np.float32(0.5)]}, {"share": float("inf")},
            {"records": np.arange(3), "name": None}, {}]
    labels = StepLabels("odd", "1", ODD)
    for i, evidence in enumerate(hard):
        labels.add("p", "r", i, 0.5, True, evidence=evidence)
    rows = assert_same_rows(tmp_path, labels)
    assert rows[3]["evidence"].endswith("NaN]}]}") and json.loads(rows[7]["evidence"])["records"] == 2 ** 70


def test_evidence_too_long_for_one_string_array_is_split_into_several_and_loses_nothing(monkeypatch):
    evidence = [{"name": f"label {i}", "count": i, "share": float("nan") if i == 5 else 0.5} for i in range(9)]
    whole = evidence_json.encode_evidence(evidence)
    monkeypatch.setattr(evidence_json, "MAX_BYTES", 100)  # about two labels' text per array
    split = evidence_json.encode_evidence(evidence)
    assert whole.num_chunks == 1 and split.num_chunks >= 4
    assert split.to_pylist() == whole.to_pylist()
    assert [canonical(text) for text in split.to_pylist()] == [json.dumps(e, sort_keys=True) for e in evidence]


def test_a_non_finite_float_among_real_nulls_is_stored_as_json_wrote_it_wherever_its_type_can_hold_one(tmp_path):
    labels = StepLabels("odd", "1", ODD)
    for i in range(40):  # every label holds a real null; a few hold NaN or infinity in a float-bearing field
        evidence = {"name": None, "share": 0.5, "count": i, "records": [{"k": None}]}
        if i == 7:
            evidence["share"] = float("nan")
        if i == 23:
            evidence["records"] = [{"k": None, "deep": (1.0, float("-inf"))}]
        if i in (30, 31):  # finite values whose sum overflows: a closer look finds nothing to redo
            evidence["share"] = 1e308
        labels.add("p", "r", i, 0.5, True, evidence=evidence)
    rows = assert_same_rows(tmp_path, labels)
    texts = [row["evidence"] for row in rows]
    assert '"share": NaN' in texts[7] and "-Infinity" in texts[23]
    assert sum("NaN" in t or "Infinity" in t for t in texts) == 2  # the other 38 kept orjson's compact text
    assert texts[0] == '{"name":null,"share":0.5,"count":0,"records":[{"k":null}]}'


def test_a_non_finite_float_given_by_set_evidence_or_brought_by_extend_is_stored_as_json_wrote_it():
    first, second = StepLabels("odd", "1", ODD), StepLabels("odd", "1", ODD)
    for i in range(3):
        first.add("p", "r", i, 0.5, True, evidence={"share": 0.5})
        second.add("p", "q", i, 0.5, True, evidence={"share": float("inf") if i == 1 else None})
    first.extend(second)
    assert first.table("run").column("evidence").to_pylist() == [
        '{"share":0.5}', '{"share":0.5}', '{"share":0.5}', '{"share":null}', '{"share": Infinity}', '{"share":null}']
    first.set_evidence("share", float("nan"))
    assert first.table("run").column("evidence").to_pylist() == ['{"share": NaN}'] * 6


def test_a_nan_in_a_field_declared_as_an_integer_is_stored_as_null_the_documented_limit():
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 0.5, True, evidence={"count": float("nan")})  # not of its declared type
    assert labels.table("run").column("evidence").to_pylist() == ['{"count":null}']
    assert evidence_json.encode_evidence([{"count": float("nan")}]).to_pylist() == ['{"count": NaN}']  # no types
    other_type = evidence_json.encode_evidence([{"share": "1.5"}, {"share": float("inf")}], ODD)
    assert other_type.to_pylist() == ['{"share":"1.5"}', '{"share": Infinity}']  # a str among a float field's


def test_ids_are_stored_label_by_label_however_the_labeler_orders_or_repeats_them():
    given = [("p1", "r1"), ("p1", "r1"), ("p1", "r2"), ("p2", "r2"), ("p1", "r1"), ("p" + "1", "r" + "1"),
             ("p3", "r3"), ("p3", "r3")]  # back to an earlier rollout, an equal string not the same object
    labels = StepLabels("odd", "1", ODD)
    for i, (problem, rollout) in enumerate(given):
        labels.add(problem, rollout, i, 0.5, True)
    more = StepLabels("odd", "1", ODD)
    more.add("p3", "r3", 8, 0.5, True)
    more.add("p4", "r4", 9, 0.5, True)
    labels.extend(more)
    want = given + [("p3", "r3"), ("p4", "r4")]
    table = labels.table("run")
    assert list(zip(table.column("problem_id").to_pylist(), table.column("rollout_id").to_pylist())) == want
    assert [(label.problem_id, label.rollout_id) for label in labels] == want
    assert (labels[-1].problem_id, labels[3].problem_id, labels[3].rollout_id) == ("p4", "p2", "r2")
    bad = StepLabels("odd", "1", ODD)
    bad.add("p", 7, 0, 0.5, True)  # an id that is no string: refused when the column is built, naming it
    with pytest.raises(ValueError, match="step_labels.rollout_id"):
        bad.table("run")


def test_a_plain_enum_member_is_stored_as_its_value_the_one_documented_difference():
    Color = enum.Enum("Color", {"RED": 1})
    assert evidence_json.encode_evidence([{"c": Color.RED}]).to_pylist() == ['{"c":1}']  # json: "Color.RED"
    assert json.loads(labels_table([StepLabel("p", "r", 0, "x", "1", 1.0, True, evidence={"c": Color.RED})],
                                   "run").column("evidence")[0].as_py()) == {"c": "Color.RED"}


def test_a_count_of_the_wrong_type_is_refused_naming_its_column_and_nothing_is_added():
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, prompt_tokens=5)
    with pytest.raises(ValueError, match=r"odd: step_labels.completion_tokens needs an integer.*got 2.5"):
        labels.add("p", "r", 1, 1.0, True, prompt_tokens=5, completion_tokens=2.5)
    with pytest.raises(ValueError, match=r"step_labels.step_index needs an integer.*got 4294967296"):
        labels.add("p", "r", 2 ** 32, 1.0, True)
    assert len(labels) == 1 and labels.table("run").column("prompt_tokens").to_pylist() == [5]


def test_a_required_column_left_null_or_a_value_of_the_wrong_type_is_refused_naming_the_column():
    labels = StepLabels("odd", "1", ODD)
    labels.add(None, "r", 0, 1.0, True)
    with pytest.raises(ValueError, match=r"step_labels.problem_id is required"):
        labels.table("run")
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, "high", True)
    with pytest.raises(ValueError, match=r"step_labels.value: "):
        labels.table("run")


def test_giving_every_label_a_field_leaves_the_dicts_the_labeler_handed_over_untouched():
    handed = {"count": 1}
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, evidence=handed)
    labels.set_evidence("share", 0.5)
    assert handed == {"count": 1} and labels[0].evidence == {"count": 1, "share": 0.5}


def test_an_undeclared_evidence_field_is_refused_and_nothing_is_added():
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, evidence={"count": 1})
    with pytest.raises(ValueError, match=r"odd: evidence fields \['cuont'\] are not declared"):
        labels.add("p", "r", 1, 1.0, True, evidence={"cuont": 2})
    with pytest.raises(ValueError, match="not declared"):
        labels.add("p", "r", 1, 1.0, True, evidence={**{k: None for k in ODD if k != "count"}, "cuont": 2})
    assert [label.step_index for label in labels] == [0]
    assert labels.table("run").num_rows == 1


def test_the_columns_read_back_as_step_labels():
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, 0.5, 1, 2, 3, {"count": 1})
    labels.add("p", "r", 1, None, None)
    labels.set_evidence("share", 0.25)
    assert labels[0] == StepLabel("p", "r", 0, "odd", "1", 1.0, True, 0.5, 1, 2, 3, {"count": 1, "share": 0.25})
    assert labels[-1].evidence == {"share": 0.25} and len(labels[:1]) == 1
    other = StepLabels("odd", "1", ODD)
    other.extend(labels)
    other.extend([StepLabel("p", "r", 2, "odd", "1", 0.0, False)])
    assert [l.step_index for l in other] == [0, 1, 2] and other[:2] == list(labels)
    with pytest.raises(ValueError, match="judge_vote/1 label added to the labels of odd/1"):
        other.extend([StepLabel("p", "r", 3, "judge_vote", "1", 0.0, False)])


def test_the_write_benchmark_stores_the_same_rows_through_both_output_types():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from label_writes import pipeline_label_writes

    result = pipeline_label_writes(600, repeats=1)
    assert result["same_rows"] and set(result["paths"]) == {"step objects", "columns"}
    assert set(result["columns_parts_cpu_s"]) == {"mc_value", "tool_verify", "judge_vote"}
    assert result["parallel"]["shards"] == 6 and result["parallel"]["workers"] == 2
    assert result["threads"]["shards"] == 6 and result["threads"]["write_rows_per_s"] > 0


def _evidence_in_child(_) -> list[str]:
    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, evidence={"count": 2})
    return labels.table("run").column("evidence").to_pylist()


def test_a_forked_worker_encodes_evidence_after_its_parent_did():
    import multiprocessing

    labels = StepLabels("odd", "1", ODD)
    labels.add("p", "r", 0, 1.0, True, evidence={"count": 1})
    assert labels.table("run").column("evidence").to_pylist() == ['{"count":1}']  # the parent's encoder exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_evidence_in_child, [0], chunksize=1) == [['{"count":2}']]
