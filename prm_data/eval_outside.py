"""Run this project's labelers on an outside ProcessBench-style set and store what they said.

ProcessBench (Zheng et al., 2024) and PRMBench ship solutions as rows of
`problem`, `steps` (a list of strings) and `label` (index of the earliest wrong
step, -1 when every step is right). `read_processbench_set` reads such a set
from a JSONL/JSON file, a Parquet file or a local dataset folder
(`save_to_disk`, or a folder of JSONL/Parquet files); `label_outside_set`
stores it as one run's `problems`, `rollouts` and `steps` and runs the named
labelers of `prm_data/labelers/registry.py` on the given steps (tool
verification, the judges, the Monte Carlo labelers with the run config's
completer), writing their `step_labels` (and `judgments`, `completions`,
`tree_nodes`) under that run like any pipeline run's. `prm_data/evaluate.py`
then scores each labeler's first error against `label`.

Monte Carlo labelers grade completions against a gold answer, so they need an
`answer` column; a set without one is refused for them before any model call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from prm_data.records import StepLabel, labels_table
from prm_data.rollouts import RolloutSteps
from prm_data.warehouse import Warehouse

OUTSIDE_SOURCE = "processbench-file"
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def runnable() -> dict[str, str]:
    """The labelers an outside set can run, by kind, from their registry entries: `model_free` (no
    models), `judge` (the judge panel's votes, `judge_vote`), `mc` (a completer or prover, no judges)."""
    from prm_data.labelers.registry import LABELERS, PANEL

    kinds = {}
    for name, entry in LABELERS.items():
        if not entry.needs:
            kinds[name] = "model_free"
        elif name == PANEL:
            kinds[name] = "judge"
        elif entry.sampler is not None and "judges" not in entry.needs:
            kinds[name] = "mc"
    return kinds


class OutsideSetError(ValueError):
    """The file is not a usable ProcessBench-style set, or a labeler cannot run on it."""


@dataclass(frozen=True)
class OutsideRow:
    problem_id: str
    rollout_id: str
    problem: str
    steps: tuple[str, ...]
    label: int
    answer: str | None


def is_outside_set(path: str) -> bool:
    """True for a data file, or a local folder that is not a prm-data export."""
    p = Path(path)
    if p.is_file():
        return True
    return p.is_dir() and not (p / "export.json").exists() and not (p / "arrow" / "processbench").exists()


def _records(path: Path, split: str) -> list[dict]:
    if path.is_file():
        if path.suffix not in DATA_SUFFIXES:
            raise OutsideSetError(f"{path}: expected a .jsonl, .json or .parquet file")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json" and text.lstrip().startswith("["):
            return json.loads(text)
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise OutsideSetError(f"{path}:{n}: not a JSON object: {exc.msg}") from None
        return out
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        if hasattr(ds, "keys"):
            if split == "all":
                return [r for s in sorted(ds) for r in ds[s]]
            if split not in ds:
                raise OutsideSetError(f"{path} has no split {split!r} (it has {sorted(ds)})")
            ds = ds[split]
        return list(ds)
    files = sorted(f for f in path.rglob("*") if f.suffix in DATA_SUFFIXES)
    if not files:
        raise OutsideSetError(f"{path} holds no .jsonl, .json or .parquet file and no saved dataset")
    return [r for f in files for r in _records(f, split)]


def read_processbench_set(path: str, split: str = "all") -> list[OutsideRow]:
    """The rows of a ProcessBench-style set: problem, steps, label (-1 = no error), optional answer.

    `split` picks a split of a saved `DatasetDict` (`all` = every split); a file has no splits.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    rows = []
    for n, rec in enumerate(_records(p, split)):
        missing = [k for k in ("problem", "steps", "label") if k not in rec]
        if missing:
            raise OutsideSetError(f"{path}: row {n} has no {', '.join(missing)} (a ProcessBench row has "
                                  "problem, steps, label)")
        steps, label = rec["steps"], rec["label"]
        if not isinstance(steps, (list, tuple)) or not steps or not all(isinstance(s, str) for s in steps):
            raise OutsideSetError(f"{path}: row {n}: steps must be a non-empty list of strings")
        if not isinstance(label, int) or not -1 <= label < len(steps):
            raise OutsideSetError(f"{path}: row {n}: label must be -1 or a step index below {len(steps)}, "
                                  f"got {label!r}")
        problem = str(rec["problem"])
        problem_id = "pb-" + hashlib.sha256(problem.encode()).hexdigest()[:20]
        row_key = str(rec.get("id", n))
        rollout_id = "pb-" + hashlib.sha256("\x1f".join([problem, row_key, *steps]).encode()).hexdigest()[:24]
        answer = rec.get("answer")
        rows.append(OutsideRow(problem_id, rollout_id, problem, tuple(steps), label,
                               None if answer is None else str(answer)))
    if not rows:
        raise OutsideSetError(f"{path} has no rows")
    return rows


def _rollout_ids(rows: Sequence[OutsideRow], run_id: str) -> list[OutsideRow]:
    """Rows with rollout ids made unique to the run, so two evaluations of one set never mix labels."""
    return [OutsideRow(r.problem_id, "pb-" + hashlib.sha256(f"{run_id}\x1f{r.rollout_id}".encode()).hexdigest()[:24],
                       r.problem, r.steps, r.label, r.answer) for r in rows]


def store_outside_set(warehouse: Warehouse, rows: Sequence[OutsideRow], run_id: str, source: str) -> None:
    """Write the set as the run's problems, rollouts and steps (the evaluated solutions' model: `outside`)."""
    now = datetime.now(timezone.utc)
    problems = {r.problem_id: {"problem_id": r.problem_id, "run_id": run_id, "source": f"{OUTSIDE_SOURCE}:{source}",
                               "question": r.problem, "answer": r.answer or "", "created_at": now} for r in rows}
    warehouse.write_shard("problems", list(problems.values()), run_id=run_id, shard="outside")
    warehouse.write_shard("rollouts", [{
        "rollout_id": r.rollout_id, "run_id": run_id, "problem_id": r.problem_id, "policy_model": "outside",
        "sample_index": i, "text": "\n\n".join(r.steps), "answer_status": "unparseable",
        "num_steps": len(r.steps), "true_first_error": r.label} for i, r in enumerate(rows)],
        run_id=run_id, shard="outside")
    warehouse.write_shard("steps", [{"rollout_id": r.rollout_id, "run_id": run_id, "problem_id": r.problem_id,
                                     "step_index": i, "text": t} for r in rows for i, t in enumerate(r.steps)],
                          run_id=run_id, shard="outside")


def _judge_config(config, judge: str | None):
    from prm_data.labelers.registry import PANEL

    jv = config.labeling.config_of(PANEL)
    if judge is None:
        return jv
    specs = [j for j in jv.judges if j.name == judge]
    if not specs:
        specs = [type(jv.judges[0])(name=judge)] if jv.judges else []
    return jv.model_copy(update={"judges": specs})


def label_outside_set(warehouse: Warehouse, rows: Sequence[OutsideRow], labelers: Sequence[str], config,
                      run_id: str, source: str) -> tuple[dict[str, Sequence[StepLabel]], list[OutsideRow]]:
    """Store the set under `run_id`, run each labeler (or `judge:NAME`) on it.

    Returns each source's labels and the rows as stored (rollout ids unique to the run).

    `config` is a `RunConfig`: its labeler configs, completer and judge backends are used.
    """
    from prm_data.failures import FailureLog
    from prm_data.labelers.protocol import JudgePanel, LabelerInputs
    from prm_data.labelers.registry import PANEL, spec
    from prm_data.llm.factory import make_client
    from prm_data.trees.prefix_tree import PrefixTree
    from prm_data.trees.sampling import Completer

    names = [s.partition(":")[2] if s.startswith("labeler:") else s for s in labelers]
    kinds = runnable()
    unsupported = [n for n in names if n not in kinds and not n.startswith("judge:")]
    if unsupported:
        raise OutsideSetError(f"cannot run {', '.join(unsupported)} on an outside set; runnable: "
                              f"{', '.join(f'labeler:{n}' for n in kinds)}, judge:NAME")
    if any(kinds.get(n) == "mc" for n in names) and any(r.answer is None for r in rows):
        raise OutsideSetError(f"{source}: Monte Carlo labelers grade completions against the gold answer; "
                              "the set needs an `answer` column on every row")
    unknown_judges = sorted({n.partition(":")[2] for n in names if n.startswith("judge:")} - set(config.judges))
    if unknown_judges:
        raise OutsideSetError(f"judge {', '.join(unknown_judges)} is not in the run config's judges "
                              f"({', '.join(sorted(config.judges))}); give --config with its backend")
    rows = _rollout_ids(rows, run_id)
    store_outside_set(warehouse, rows, run_id, source)
    failures = FailureLog(run_id)
    rollouts = [RolloutSteps(r.problem_id, r.rollout_id, question=r.problem, steps=tuple(r.steps), answer=r.answer,
                             is_correct=r.label == -1, policy_model="outside") for r in rows]
    out: dict[str, Sequence[StepLabel]] = {}
    for source_name, name in zip(labelers, names):
        inputs = LabelerInputs(run_id, rollouts, [], failures)
        if kinds.get(name) == "model_free":
            labels = spec(name).run(inputs, config.labeling.config_of(name)).labels
        elif kinds.get(name) == "judge" or name.startswith("judge:"):
            judge = name.partition(":")[2] or None
            jv = _judge_config(config, judge)
            clients = {j.name: make_client(config.judges[j.name], warehouse, run_id, failures) for j in jv.judges}
            inputs.judges = JudgePanel(clients, jv)
            result = spec(PANEL).run(inputs, jv)
            for judge_client in clients.values():
                if getattr(judge_client, "cache", None) is not None:
                    judge_client.cache.flush()
            if result.tables.get("judgments"):
                warehouse.write_shard("judgments", result.tables["judgments"], run_id=run_id,
                                      shard=f"{name}".replace(":", "-"))
            labels = result.labels
        else:
            backend = config.prover_backend if spec(name).sampler == "prover" else config.completer_backend
            client = make_client(backend, warehouse, run_id, failures)
            completer = Completer(client, PrefixTree(client.model), config.labeling.completer, run_id, failures)
            inputs.sampler = completer
            labels = spec(name).run(inputs, config.labeling.config_of(name)).labels
            if completer.completion_rows:
                warehouse.write_shard("completions", completer.completion_rows, run_id=run_id, shard=name)
            warehouse.write_shard("tree_nodes", completer.tree.to_rows(run_id, sorted({r.problem_id for r in rows})),
                                  run_id=run_id, shard=name)
            if getattr(client, "cache", None) is not None:
                client.cache.flush()
        if labels:
            warehouse.write_shard("step_labels", labels_table(labels, run_id), run_id=run_id,
                                  shard=name.replace(":", "-"))
        out[source_name] = labels
    failures.flush(warehouse, "outside-eval")
    return out, rows


def first_errors(labels: Sequence[StepLabel]) -> dict[str, int]:
    """Per rollout with a hard label, its first step labelled bad (-1 when none is): the `first_error` view's rule.

    A rollout on which the labeler abstained at every step is left out (not covered).
    """
    out: dict[str, int] = {}
    for lab in sorted((l for l in labels if l.hard_label is not None), key=lambda l: l.step_index):
        if lab.hard_label is False and out.get(lab.rollout_id, -1) == -1:
            out[lab.rollout_id] = lab.step_index
        else:
            out.setdefault(lab.rollout_id, -1)
    return out
