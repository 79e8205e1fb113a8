"""The one place where every warehouse table is declared.

Each table is a pyarrow schema. Writers pass the schema explicitly
(`Warehouse.write_shard(TABLE, rows)`), the DuckDB views are derived from the
same schemas (an empty typed shard anchors every view), and the Hub export
reads columns by these names. Nothing else in the project re-declares a column.

Conventions:
- ids are strings (content hashes or uuid4 hex), so shards from different runs
  never collide;
- every row carries `run_id`, the run that produced it;
- free-form details (evidence, config, metadata) are JSON text columns, so the
  schema stays stable while labelers evolve;
- nullable columns mean "not known", never "failed": failures are rows in the
  `failures` table with a reason.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType] | tuple[str, pa.DataType, bool]) -> pa.Schema:
    out = []
    for f in fields:
        name, typ = f[0], f[1]
        nullable = f[2] if len(f) == 3 else True
        out.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(out)


PROBLEMS = _schema(
    ("problem_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("source", pa.string(), False),  # "bank", "jsonl:path", "hf:gsm8k", ...
    ("question", pa.string(), False),
    ("answer", pa.string(), False),  # canonical final answer, as text
    ("reference_solution", pa.string()),  # step-by-step text when the source has one
    ("difficulty", pa.int32()),  # number of operations for bank problems
    ("metadata", pa.string()),  # JSON
    ("created_at", TS),
)

ROLLOUTS = _schema(
    ("rollout_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("policy_model", pa.string(), False),
    ("sample_index", pa.int32(), False),
    ("text", pa.string(), False),
    ("final_answer", pa.string()),  # null when no answer could be extracted
    ("answer_status", pa.string(), False),  # correct | incorrect | unparseable
    ("is_correct", pa.bool_()),
    ("num_steps", pa.int32(), False),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("request_key", pa.string()),  # key into the request cache
    ("true_first_error", pa.int32()),  # known only for the synthetic policy; -1 = no error
    ("problem_outcome", pa.string()),  # mixed | all_correct | all_incorrect over the problem's rollouts
    ("score", pa.float64()),  # the verifier's soft score in [0, 1] (code: share of tests passed); null before it
    ("verifier", pa.string()),  # name@version of the outcome verifier that graded it; null before it
    ("tests_passed", pa.list_(pa.bool_())),  # code: each unit test passed or not, in spec order; else null
)

STEPS = _schema(
    ("rollout_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("step_index", pa.int32(), False),  # 0-based
    ("text", pa.string(), False),
    ("node_id", pa.string()),  # prefix-tree node ending with this step
)

TREE_NODES = _schema(
    ("node_id", pa.string(), False),  # hash of (problem_id, normalized step prefix)
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("parent_id", pa.string()),  # null for the root (empty prefix)
    ("depth", pa.int32(), False),  # number of steps in the prefix
    ("step_text", pa.string()),  # the step that leads from parent to this node
    ("visits", pa.int64(), False),
    ("mc_successes", pa.int64(), False),
    ("mc_samples", pa.int64(), False),
    ("completion_ids", pa.list_(pa.string())),  # completions that passed through this node
    ("completer_model", pa.string()),  # the model whose samples the MC statistics count
    ("mc_score", pa.float64()),  # sum of the counted completions' soft scores; null in shards written before it
)

COMPLETIONS = _schema(
    ("completion_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("node_id", pa.string()),  # prefix node the completion continued from
    ("purpose", pa.string(), False),  # rollout | mc | omega | sibling | progress
    ("model", pa.string(), False),
    ("prefix_steps", pa.int32(), False),
    ("text", pa.string(), False),  # the continuation only
    ("final_answer", pa.string()),
    ("is_correct", pa.bool_()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("request_key", pa.string()),
    ("score", pa.float64()),  # the verifier's soft score of the whole solution; null in shards before it
    ("verifier", pa.string()),  # name@version of the outcome verifier that graded it; null before it
    ("tests_passed", pa.list_(pa.bool_())),  # code: each unit test passed or not, in spec order; else null
)

STEP_LABELS = _schema(
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("rollout_id", pa.string(), False),
    ("step_index", pa.int32(), False),
    ("labeler", pa.string(), False),  # mc_value, omega_prm, progress, tool_verify, judge_vote, rubric
    ("labeler_version", pa.string(), False),
    ("value", pa.float64()),  # soft value (MC estimate, advantage, vote share, rubric score)
    ("hard_label", pa.bool_()),  # True = step is good; null = labeler abstains
    ("confidence", pa.float64()),  # in [0, 1]
    ("prompt_tokens", pa.int64(), False),
    ("completion_tokens", pa.int64(), False),
    ("calls", pa.int64(), False),
    ("evidence", pa.string()),  # JSON
)

JUDGMENTS = _schema(
    ("judgment_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("rollout_id", pa.string(), False),
    ("judge", pa.string(), False),  # judge name from the config
    ("model", pa.string(), False),
    ("sample_index", pa.int32(), False),
    ("mode", pa.string(), False),  # per_step | first_error | rubric
    ("prompt_version", pa.string(), False),
    ("rubric_id", pa.string()),
    ("status", pa.string(), False),  # vote | abstain
    ("step_verdicts", pa.list_(pa.bool_())),  # per_step mode: one verdict per step
    ("first_error_step", pa.int32()),  # first_error mode: index, -1 = no error
    ("raw_text", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
)

RUBRICS = _schema(
    ("rubric_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("kind", pa.string(), False),  # reference | contrastive
    ("model", pa.string(), False),
    ("prompt_version", pa.string(), False),
    ("hard_rules", pa.list_(pa.string())),
    ("principles", pa.list_(pa.string())),
    ("raw_text", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
)

FINAL_LABELS = _schema(
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("rollout_id", pa.string(), False),
    ("step_index", pa.int32(), False),
    ("policy", pa.string(), False),  # consensus | hybrid | mc_only | judge_only
    ("label", pa.bool_()),
    ("value", pa.float64()),
    ("sources", pa.list_(pa.string())),  # labelers that decided this label
    ("kept", pa.bool_(), False),  # survived aggregation and filters
    ("drop_reason", pa.string()),  # a category to GROUP BY: consensus, duplicate_rollout, class_balance, ...
    ("drop_detail", pa.string()),  # the specifics of that drop: ids, step indices, the other reasons
)

STEPWISE_ROWS = _schema(
    # The stepwise export's row of one rollout under one policy, built from that run's steps and
    # final labels when the final labels are written (prm_data/stepwise_rows.py), so that exporting
    # is a scan. `completions` is the longest run of steps from step 0 whose final label is kept and
    # not null; it is empty when the first step has none (the row still records that this run
    # decided, so an older run's row is never exported in its place).
    ("run_id", pa.string(), False),
    ("policy", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("rollout_id", pa.string(), False),
    ("prompt", pa.string()),  # problems.question
    ("completions", pa.list_(pa.string())),  # steps.text, in step order
    ("labels", pa.list_(pa.bool_())),  # final_labels.label
    ("values", pa.list_(pa.float64())),  # final_labels.value, or 1.0/0.0 from the label when null
    ("label_sources", pa.list_(pa.list_(pa.string()))),  # final_labels.sources ([] when null)
    ("is_correct", pa.bool_()),  # rollouts.is_correct
    ("policy_model", pa.string()),  # rollouts.policy_model
    ("tests_passed", pa.list_(pa.bool_())),  # rollouts.tests_passed (code: each unit test; else null)
)

RUNS = _schema(
    ("run_id", pa.string(), False),
    ("flow", pa.string(), False),
    ("status", pa.string(), False),  # running | completed | failed
    ("started_at", TS),
    ("finished_at", TS),
    ("config_json", pa.string()),
    ("config_version", pa.string()),  # hash of the labeling-relevant config
    ("git_sha", pa.string()),
    ("package_versions", pa.string()),  # JSON
    ("timings", pa.string()),  # JSON: stage -> seconds
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("calls", pa.int64()),
    ("cache_hits", pa.int64()),
    ("cache_misses", pa.int64()),
    ("failures", pa.int64()),
    ("summary", pa.string()),  # JSON
    # What the run paid for, over all its processes (a resumed run's killed ones too): the answers
    # it stored in the request cache (prm_data.llm.cache.paid_by_run). The counters above
    # (prompt_tokens ... cache_misses) are those of the process that finished the run.
    ("paid_requests", pa.int64()),
    ("paid_prompt_tokens", pa.int64()),
    ("paid_completion_tokens", pa.int64()),
)

FAILURES = _schema(
    ("failure_id", pa.string(), False),
    ("run_id", pa.string(), False),
    ("stage", pa.string(), False),  # source | generate | label:<name> | judge | export ...
    ("item_id", pa.string()),  # problem, rollout or request key
    ("reason", pa.string(), False),
    ("input", pa.string()),  # the offending input, truncated
    ("created_at", TS),
)

LLM_CACHE = _schema(
    ("request_key", pa.string(), False),  # hash of backend, model, prompt, params, seed, sample index
    ("backend", pa.string(), False),
    ("model", pa.string(), False),
    ("text", pa.string(), False),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("latency_s", pa.float64()),
    ("metadata", pa.string()),  # JSON, e.g. the synthetic policy's true first error
    ("created_at", TS),
)

RUN_PROBLEMS = _schema(
    ("run_id", pa.string(), False),
    ("problem_id", pa.string(), False),
    ("shard", pa.string(), False),  # the labeling shard the problem belongs to in this run
    ("labeling_version", pa.string(), False),  # RunConfig.labeling_version() of the run
)

EVAL_RESULTS = _schema(
    ("run_id", pa.string(), False),
    ("evaluated", pa.string(), False),  # a PRM checkpoint path or a labeler/judge name
    ("benchmark", pa.string(), False),  # processbench | best_of_n
    ("metric", pa.string(), False),
    ("value", pa.float64()),
    ("threshold", pa.float64()),
    ("n", pa.int64()),
    ("details", pa.string()),  # JSON
    ("created_at", TS),
)

TABLES: dict[str, pa.Schema] = {
    "problems": PROBLEMS,
    "rollouts": ROLLOUTS,
    "steps": STEPS,
    "tree_nodes": TREE_NODES,
    "completions": COMPLETIONS,
    "step_labels": STEP_LABELS,
    "judgments": JUDGMENTS,
    "rubrics": RUBRICS,
    "final_labels": FINAL_LABELS,
    "stepwise_rows": STEPWISE_ROWS,
    "runs": RUNS,
    "failures": FAILURES,
    "run_problems": RUN_PROBLEMS,
    "llm_cache": LLM_CACHE,
    "eval_results": EVAL_RESULTS,
}

# Tables whose rows every run reads, whichever run wrote them: a problem is stored once, by the
# run that first saw it, and later runs label it from that row. In every other table a run's
# rows are its own (`run_id=<run>/` shards), and a run reads its own work back from those alone
# (`for_run`, prm_data/run_warehouse.py); the few reads across runs (earlier runs' prefix trees of the same
# problems, an export of every run) say so where they are made.
SHARED_TABLES: frozenset[str] = frozenset({"problems"})


def schema_for(table: str) -> pa.Schema:
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(sorted(TABLES))}") from None


def to_table(table: str, rows: list[dict]) -> pa.Table:
    """Build a pyarrow table from row dicts, validated against the table's schema.

    Missing nullable columns become null; a missing non-nullable column or a
    value of the wrong type raises ValueError naming the table and column.
    """
    schema = schema_for(table)
    cols: dict[str, list] = {f.name: [] for f in schema}
    unknown = set()
    for row in rows:
        unknown.update(set(row) - cols.keys())
        for f in schema:
            cols[f.name].append(row.get(f.name))
    if unknown:
        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    arrays = []
    for f in schema:
        values = cols[f.name]
        if not f.nullable and any(v is None for v in values):
            raise ValueError(f"{table}.{f.name} is required but a row has no value")
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
            raise ValueError(f"{table}.{f.name}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=schema)
