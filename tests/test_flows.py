"""The nightly flow under a real Prefect server (one test harness per session).

Specifications:
- a run on the synthetic policy fills every table, records itself in `runs`,
  publishes the summary artifact and a report of non-empty plots, and its
  summary says what SQL counts;
- a rerun after a failure mid-flow does only the unfinished work: no model
  request answered before is asked again, finished stages are Prefect cache
  hits, and no table holds a row twice;
- a new run takes only the problems not yet labeled under the same labeling
  version, so a nightly schedule grows the dataset;
- changing what does not change labels (workers, the reports folder) keeps
  every finished task a cache hit;
- `prm_data/` never imports Prefect.
"""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path
from uuid import UUID

import pytest

import flows  # noqa: F401  (Prefect settings before prefect is imported)
from flows.nightly import nightly
from prm_data.config import RunConfig
from prm_data.labelers.judge_probes import JudgeRejected
from flows.tasks import forget_contexts
from prm_data.serve_sim import SimServer
from prm_data.warehouse import Warehouse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = 8
ROLLOUTS_PER_PROBLEM = 4

# The natural key of every table the flow writes: no two rows may share one.
KEYS = {
    "problems": ["problem_id", "run_id"],
    "run_problems": ["run_id", "problem_id"],
    "rollouts": ["rollout_id"],
    "steps": ["rollout_id", "step_index"],
    "completions": ["completion_id"],
    "tree_nodes": ["run_id", "node_id", "completer_model"],
    "step_labels": ["run_id", "rollout_id", "step_index", "labeler"],
    "judgments": ["judgment_id"],
    "final_labels": ["run_id", "rollout_id", "step_index", "policy"],
    "stepwise_rows": ["run_id", "rollout_id", "policy"],
    "runs": ["run_id"],
    "llm_cache": ["request_key"],
}


def sim_config(root: Path, **update) -> RunConfig:
    """A small run on the synthetic policy and judge: 8 problems x 4 rollouts, shards of 4 problems."""
    data = {
        "name": "flowtest",
        "warehouse": str(root / "warehouse"),
        "reports_dir": str(root / "reports"),
        "problems": {"source": f"bank:{PROBLEMS}:3:0"},
        "rollouts": {"n": ROLLOUTS_PER_PROBLEM},
        "policy": {"kind": "sim", "model": "sim-policy"},
        "judges": {"judge": {"kind": "sim", "model": "sim-judge"}},
        "labeling": {"labelers": ["mc_value", "tool_verify", "judge_vote"], "mc_value": {"k": 4},
                     "judge_vote": {"judges": [{"name": "judge", "samples": 3}]}},
        "export": {"out_dir": str(root / "export")},
        "shard_size": 4,
    }
    data.update(update)
    return RunConfig.model_validate(data)


def run_nightly(config: RunConfig, **kwargs):
    """The flow's final state (the summary is `state.result()`), from a fresh set of clients."""
    forget_contexts()  # a new night in a new process would build its clients afresh
    return nightly(config, return_state=True, **kwargs)


def duplicated_keys(wh: Warehouse) -> dict[str, int]:
    out = {}
    for table, cols in KEYS.items():
        keys = ", ".join(cols)
        n = wh.scalar(f"SELECT count(*) FROM (SELECT {keys} FROM {table} GROUP BY {keys} HAVING count(*) > 1)")
        if n:
            out[table] = n
    return out


def task_run_states(flow_run_id: UUID) -> dict[str, str]:
    """Task run name -> state name, over the subflows of a nightly flow run (one per stage of the plan)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId,
                                                TaskRunFilter, TaskRunFilterFlowRunId)

    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [f.id for f in subflows]  # not the parent's own task runs: those stand for the subflows
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                     task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)))
    return {r.name: r.state.name for r in runs}


@pytest.fixture(scope="module")
def thread_run(tmp_path_factory):
    """One nightly run with the thread runner, shared by the end-to-end and the cache tests."""
    config = sim_config(tmp_path_factory.mktemp("thread"))
    state = run_nightly(config)
    return config, state


def test_a_nightly_run_on_sim_fills_the_warehouse_and_reports_what_sql_counts(thread_run):
    config, state = thread_run
    assert state.is_completed(), state
    summary = state.result()
    wh = Warehouse(config.warehouse)
    run_id = summary["run_id"]
    count = lambda table: wh.scalar(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id])  # noqa: E731

    assert count("run_problems") == summary["problems"] == PROBLEMS
    assert count("rollouts") == summary["rollouts"] == PROBLEMS * ROLLOUTS_PER_PROBLEM
    assert count("steps") == summary["steps"] > summary["rollouts"]
    for table in ("completions", "tree_nodes", "judgments", "final_labels"):
        assert count(table) > 0, table
    # one stepwise row per rollout and policy that has final labels, built when they were written
    assert count("stepwise_rows") == wh.scalar(
        "SELECT count(DISTINCT (rollout_id, policy)) FROM final_labels WHERE run_id = ?", [run_id])
    assert wh.scalar("SELECT count(*) FROM llm_cache") > 0
    by_labeler = {r["labeler"]: r["steps"] for r in summary["labelers"]}
    assert by_labeler == {r["labeler"]: r["n"] for r in wh.rows(
        "SELECT labeler, count(*) AS n FROM step_labels WHERE run_id = ? GROUP BY labeler", [run_id])}
    assert set(by_labeler) == {"mc_value", "tool_verify", "judge_vote"}
    assert summary["final"]["kept_steps"] == wh.scalar(
        "SELECT count(*) FROM final_labels WHERE run_id = ? AND kept", [run_id])
    assert summary["failures_total"] == count("failures")

    [run] = wh.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])
    assert run["status"] == "completed" and run["finished_at"] >= run["started_at"]
    assert RunConfig.model_validate_json(run["config_json"]) == config
    assert run["config_version"] == config.labeling_version()
    assert run["git_sha"] and '"prefect": "3.' in run["package_versions"]
    assert run["calls"] == summary["tokens"]["calls"] > 0
    assert set(summary["timings"]) == {"select", "generate", "check_judges", "expand_trees", "label", "aggregate",
                                       "export"}

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["prm-data-run-summary"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    [artifact] = artifacts
    assert artifact.type == "markdown" and f"`{run_id}`" in artifact.data
    assert f"| rollouts (pass rate) | {summary['rollouts']} " in artifact.data

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        by_key = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))}
    assert flow_run.name == f"prm-data-{run_id}"  # the Prefect run is found by the prm-data run id
    balance = json.loads(by_key["prm-data-label-balance"].data)
    assert {r["labels"]: r["steps"] for r in balance} == {**by_labeler, "final (kept)": summary["final"]["kept_steps"]}
    link = by_key["prm-data-export"]
    assert Path(summary["export"]["path"]).resolve().as_uri() in link.data  # Prefect stores a link as markdown

    import matplotlib.image as mpimg

    names = sorted(Path(p).name for p in summary["report"])
    assert names == ["agreement_with_arithmetic.png", "cost_per_labeler.png", "first_error_hist.png", "label_agreement.png", "label_balance.png",
                     "mc_values.png"]
    for path in summary["report"]:
        assert Path(path).parent == Path(config.reports_dir) / run_id
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.05, path  # not blank


def test_what_does_not_change_labels_does_not_invalidate_a_finished_task(thread_run):
    config, state = thread_run
    run_id = state.result()["run_id"]
    other = config.model_copy(update={"max_workers": 1, "reports_dir": config.reports_dir + "-elsewhere"})
    again = run_nightly(other, run_id=run_id)
    assert again.is_completed(), again
    states = task_run_states(again.state_details.flow_run_id)
    cached = {n: s for n, s in states.items() if not n.startswith("export")}
    assert len(cached) == 1 + 2 + 1 + 2 + 2 * 2 + 2  # select, generate, check_judges, trees, label, aggregate
    assert set(cached.values()) == {"Cached"}, states


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rerun_after_a_failure_mid_flow_asks_no_model_twice_and_writes_no_row_twice(tmp_path):
    judge_port = _free_port()  # nothing listens here during the first run
    with SimServer() as policy_server:
        config = sim_config(
            tmp_path,
            policy={"kind": "openai", "model": "sim-policy", "base_urls": [policy_server.url], "api_key_env": None},
            judges={"judge": {"kind": "openai", "model": "sim-judge", "api_key_env": None, "max_retries": 0,
                              "base_urls": [f"http://127.0.0.1:{judge_port}/v1"], "timeout_s": 10}})
        wh = Warehouse(config.warehouse)

        first = run_nightly(config)
        assert first.is_failed()
        with pytest.raises(JudgeRejected):  # the judge answered nothing: refused before it labels anything
            first.result()
        [failed] = wh.rows("SELECT run_id, status FROM runs")
        assert failed["status"] == "failed"
        # mid-flow: rollouts were written; the judges were probed before any Monte Carlo money was spent
        assert wh.scalar("SELECT count(*) FROM rollouts") == PROBLEMS * ROLLOUTS_PER_PROBLEM
        assert wh.scalar("SELECT count(*) FROM completions WHERE purpose = 'mc_value'") == 0
        assert wh.scalar("SELECT count(*) FROM step_labels") == 0
        assert wh.scalar("SELECT count(*) FROM failures WHERE stage = 'generate:judge_probe'") > 0
        policy_requests = policy_server.requests_total
        assert policy_requests == len(policy_server.succeeded()) > 0

        with SimServer(port=judge_port) as judge_server:
            second = run_nightly(config)
            assert second.is_completed(), second
            summary = second.result()

            assert summary["run_id"] == failed["run_id"]  # the failed run was resumed, not restarted
            assert policy_server.requests_total > policy_requests  # the MC completions, paid only now...
            assert policy_server.asked_after_success() == []  # ...and no rollout asked again
            assert judge_server.asked_after_success() == []
            assert judge_server.requests_total > 0

    [done] = wh.rows("SELECT status FROM runs")
    assert done["status"] == "completed"
    assert wh.scalar("SELECT count(*) FROM step_labels WHERE labeler = 'judge_vote'") > 0
    assert duplicated_keys(wh) == {}
    states = task_run_states(second.state_details.flow_run_id)
    finished_before = [n for n in states if n.startswith(("generate-", "select"))]
    assert len(finished_before) == 3 and all(states[n] == "Cached" for n in finished_before), states
    assert states["expand_trees-s0000"] == states["expand_trees-s0001"] == "Completed"
    assert states["judge_vote-s0000"] == states["judge_vote-s0001"] == "Completed"


def test_a_new_run_takes_only_the_problems_not_yet_labeled(tmp_path):
    base = sim_config(tmp_path, labeling={"labelers": ["judge_vote"], "check_judges": False,
                                          "judge_vote": {"judges": [{"name": "judge", "samples": 1}]}},
                      aggregate={"policy": "judge_only"})
    config = base.model_copy(update={"problems": base.problems.model_copy(update={"limit": 5})})
    wh = Warehouse(config.warehouse)

    first = run_nightly(config, new_run=True).result()
    second = run_nightly(config, new_run=True).result()
    third = run_nightly(config, new_run=True).result()

    assert first["run_id"] != second["run_id"] != third["run_id"]
    taken = {r["run_id"]: r["problems"] for r in wh.rows(
        "SELECT run_id, list(problem_id ORDER BY problem_id) AS problems FROM run_problems GROUP BY run_id")}
    assert len(taken[first["run_id"]]) == 5
    assert len(taken[second["run_id"]]) == PROBLEMS - 5  # only what the first night left
    assert not set(taken[first["run_id"]]) & set(taken[second["run_id"]])
    assert third["problems"] == third["rollouts"] == 0  # every problem is labeled under this version
    assert wh.scalar("SELECT count(DISTINCT problem_id) FROM rollouts") == PROBLEMS
    assert duplicated_keys(wh) == {}

    # a changed labeling config is a new version: its first night starts from the beginning again
    changed = config.model_copy(update={"rollouts": config.rollouts.model_copy(update={"n": 2})})
    assert run_nightly(changed, new_run=True).result()["problems"] == 5


def test_the_library_never_imports_prefect():
    offenders = []
    for path in sorted((REPO / "prm_data").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("prefect", "prefect_dask", "prefect_ray", "flows")]
    # the CLI is the application's one composition point: it registers flows/commands.py's verbs, which
    # import Prefect only when they run (tests/test_cli.py runs the console script without importing it)
    assert offenders == ["prm_data/cli.py:14 flows"]
