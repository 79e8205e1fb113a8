"""What a new user types after README.md, run as they type it: real `prm-data` processes on a real warehouse.

One synthetic run (configs/sim.yaml with the `hybrid` aggregation policy that
configs/local.yaml uses, so the default export policy cannot happen to match)
is made once for the module; tests that change the warehouse work on a copy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from prm_data.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("prm-data")

pytestmark = pytest.mark.slow


def prm_data(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`prm-data ARGS` as typed in a shell, in `cwd`."""
    return subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error a failed command printed; it must be one line on stderr with no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A user's folder after `prm-data run -c sim-hybrid.yaml` (warehouse in ./wh)."""
    if not CLI.exists():
        pytest.skip("console script not installed (pip install -e .)")
    home = tmp_path_factory.mktemp("user")
    config = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text())
    config["aggregate"] = {"policy": "hybrid"}
    config["problems"]["source"] = "bank:12:3:0"
    (home / "sim-hybrid.yaml").write_text(yaml.safe_dump(config))
    done = prm_data("--warehouse", "wh", "run", "-c", "sim-hybrid.yaml", cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def copy_of(home: Path, tmp_path: Path) -> Path:
    shutil.copytree(home / "wh", tmp_path / "wh")
    shutil.copy(home / "sim-hybrid.yaml", tmp_path / "sim-hybrid.yaml")
    return tmp_path


# ------------------------------------------------------------------ item 2: export
def test_export_without_a_policy_exports_the_policy_the_run_wrote(home):
    done = prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home)
    assert done.returncode == 0, done.stderr
    assert "policy hybrid" in done.stdout
    stepwise = pq.read_table(home / "exports/v1/stepwise/train-00000-of-00001.parquet")
    assert stepwise.num_rows > 0
    assert json.loads((home / "exports/v1/export.json").read_text())["export_config"]["policy"] == "hybrid"


def test_a_mistyped_policy_is_refused_with_the_policies_present_and_the_folder_is_kept(home, tmp_path):
    out = tmp_path / "v1"
    assert prm_data("--warehouse", "wh", "export", "--out", str(out), cwd=home).returncode == 0
    before = (out / "export.json").read_bytes()
    error = one_line_error(prm_data("--warehouse", "wh", "export", "--out", str(out), "--policy", "hybird",
                                    cwd=home))
    assert "no final labels under policy 'hybird'" in error and "policies present: hybrid" in error
    assert (out / "export.json").read_bytes() == before


# ------------------------------------------------------------------ item 4: the README's snippets
def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_snippets_to_run():
    assert readme_python_blocks()


@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_every_readme_python_snippet_runs_as_written_on_the_readme_export(home, index):
    if "trl" in readme_python_blocks()[index]:
        pytest.importorskip("trl.experimental.prm", reason="TRL's PRMTrainer (trl>=1.0,<1.14) is not installed")
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    if not (home / "checkpoints/tiny/config.json").exists():  # the README's offline stand-in for a Hub model
        tiny = prm_data("train", "--tiny", "--dataset", "exports/v1", "--out", "checkpoints/tiny", cwd=home)
        assert tiny.returncode == 0, tiny.stderr
    snippet = home / f"snippet_{index}.py"
    snippet.write_text(readme_python_blocks()[index])
    done = subprocess.run([sys.executable, snippet.name], cwd=home, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


# ------------------------------------------------------------------ item 5: eval sources
def test_eval_refuses_a_mistyped_labeler_and_a_judge_model_name_listing_the_valid_sources(home):
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    error = one_line_error(prm_data("--warehouse", "wh", "eval", "-d", "exports/v1", "-s", "labeler:mc_vlaue",
                                    cwd=home))
    assert "unknown source 'labeler:mc_vlaue'" in error and "labeler:mc_value" in error and "judge:judge" in error
    error = one_line_error(prm_data("--warehouse", "wh", "eval", "-d", "exports/v1", "-s", "judge:sim-judge",
                                    cwd=home))
    assert "unknown source 'judge:sim-judge'" in error and "judge:judge" in error


def test_eval_n_is_the_denominator_of_each_metric(home):
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    done = prm_data("--warehouse", "wh", "eval", "-d", "exports/v1", "--split", "all", "-s", "labeler:mc_value",
                    cwd=home)
    assert done.returncode == 0, done.stderr
    printed = {m: int(n) for m, n in re.findall(r"labeler:mc_value: (\w+) = \S+ \(n=(\d+)\)", done.stdout)}
    rows = [r for split in ("train", "test") if (f := home / f"exports/v1/processbench/{split}-00000-of-00001.parquet")
            .exists() for r in pq.read_table(f).to_pylist()]
    covered = {r["rollout_id"] for r in Warehouse(home / "wh").rows(
        "SELECT rollout_id FROM first_error WHERE labeler = 'mc_value'")}
    scored = [r for r in rows if r["rollout_id"] in covered]
    assert printed["acc_erroneous"] == sum(r["label"] != -1 for r in scored)
    assert printed["acc_correct"] == sum(r["label"] == -1 for r in scored)
    assert printed["f1"] == len(scored)
    assert printed["coverage"] == len(rows)


# ------------------------------------------------------------------ item 6: an outside ProcessBench-style set
def outside_set(home: Path, tmp_path: Path, n: int = 40) -> list[dict]:
    """ProcessBench-style rows (problem, steps, label = true first error, answer) from the sim's solutions."""
    rows = Warehouse(home / "wh").rows(
        "SELECT p.question AS problem, list(s.text ORDER BY s.step_index) AS steps, "
        "any_value(r.true_first_error) AS label, any_value(p.answer) AS answer "
        "FROM rollouts r JOIN problems p USING (problem_id) JOIN steps s USING (rollout_id) "
        "GROUP BY r.rollout_id, p.question ORDER BY r.rollout_id LIMIT ?", [n])
    assert {r["label"] == -1 for r in rows} == {True, False}
    return rows


def test_eval_labels_an_outside_jsonl_set_and_reports_f1_per_labeler(home, tmp_path):
    work = copy_of(home, tmp_path)
    rows = outside_set(home, tmp_path)
    (work / "pb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = prm_data("--warehouse", "wh", "eval", "-d", "pb.jsonl", "--run-id", "eval-outside",
                    "-s", "labeler:tool_verify", "-s", "labeler:judge_vote", "-s", "labeler:mc_value",
                    "--config", "sim-hybrid.yaml", cwd=work)
    assert done.returncode == 0, done.stderr
    wh = Warehouse(work / "wh")
    for labeler in ("tool_verify", "judge_vote", "mc_value"):
        stored = wh.rows("SELECT f.first_error_step, r.true_first_error AS label FROM first_error f "
                         "JOIN rollouts r USING (rollout_id) WHERE r.run_id = 'eval-outside' AND f.labeler = ?",
                         [labeler])
        assert len(stored) == len(rows)  # every solution of the set was labelled and stored under the eval run
        err = [s["first_error_step"] == s["label"] for s in stored if s["label"] != -1]
        cor = [s["first_error_step"] == -1 for s in stored if s["label"] == -1]
        acc_e, acc_c = sum(err) / len(err), sum(cor) / len(cor)
        f1 = 2 * acc_e * acc_c / (acc_e + acc_c) if acc_e + acc_c else 0.0
        assert f"labeler:{labeler}: f1 = {f1:.4f} (n={len(stored)})" in done.stdout
    assert wh.scalar("SELECT count(*) FROM eval_results WHERE run_id = 'eval-outside' AND metric = 'f1'") == 3


def test_eval_reads_an_outside_parquet_set_and_a_saved_dataset_folder(home, tmp_path):
    import pyarrow as pa
    from datasets import Dataset

    work = copy_of(home, tmp_path)
    rows = [{k: r[k] for k in ("problem", "steps", "label")} for r in outside_set(home, tmp_path, 12)]
    pq.write_table(pa.Table.from_pylist(rows), work / "pb.parquet")
    Dataset.from_list(rows).save_to_disk(str(work / "pb_folder"))
    for dataset in ("pb.parquet", "pb_folder"):
        done = prm_data("--warehouse", "wh", "eval", "-d", dataset, "-s", "labeler:tool_verify", cwd=work)
        assert done.returncode == 0, done.stderr
        assert re.search(r"labeler:tool_verify: f1 = [\d.]+ \(n=12\)", done.stdout), done.stdout


def test_monte_carlo_on_an_outside_set_without_answers_is_refused_before_any_call(home, tmp_path):
    work = copy_of(home, tmp_path)
    rows = [{k: r[k] for k in ("problem", "steps", "label")} for r in outside_set(home, tmp_path, 5)]
    (work / "pb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    error = one_line_error(prm_data("--warehouse", "wh", "eval", "-d", "pb.jsonl", "-s", "labeler:mc_value",
                                    "--config", "sim-hybrid.yaml", cwd=work))
    assert "needs an `answer` column" in error


# ------------------------------------------------------------------ item 8: a finished run, rerun
def test_rerunning_a_completed_run_exits_0_and_says_nothing_new(home, tmp_path):
    work = copy_of(home, tmp_path)
    done = prm_data("--warehouse", "wh", "run", "-c", "sim-hybrid.yaml", "--serial", cwd=work)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "nothing new to label" in done.stdout + done.stderr


# ------------------------------------------------------------------ item 9: read-only verbs, missing warehouse
@pytest.mark.parametrize("verb", [["tables"], ["query", "SELECT 1"], ["export", "--out", "exports/x"]])
def test_read_only_verbs_refuse_a_missing_warehouse_and_create_nothing(tmp_path, verb):
    error = one_line_error(prm_data("--warehouse", "wrong/path", *verb, cwd=tmp_path))
    assert "no warehouse at" in error and "wrong/path" in error
    assert not (tmp_path / "wrong").exists()


# ------------------------------------------------------------------ item 10: wrong paths
def test_train_on_a_missing_export_is_one_line(home):
    error = one_line_error(prm_data("train", "--dataset", "exports/nope", "--model", "checkpoints/tiny", cwd=home))
    assert "exports/nope" in error


def test_eval_with_a_missing_checkpoint_is_one_line(home):
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    error = one_line_error(prm_data("--warehouse", "wh", "eval", "-d", "exports/v1", "--checkpoint", "/nope",
                                    cwd=home))
    assert "no PRM checkpoint at /nope" in error


# ------------------------------------------------------------------ convention: a report over the warehouse
def _kappa_by_hand(a: list[bool], b: list[bool]) -> float:
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return (p_o - p_e) / (1 - p_e)


def test_report_plots_the_whole_warehouse_with_kappa_calibration_and_cost(home):
    done = prm_data("--warehouse", "wh", "report", "--out", "reports/all", cwd=home)
    assert done.returncode == 0, done.stderr
    out = home / "reports/all"
    for name in ("label_balance_by_step", "steps_per_rollout", "first_error_positions", "agreement_kappa",
                 "calibration", "cost_per_kept_step"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    labels = Warehouse(home / "wh").rows("SELECT run_id, rollout_id, step_index, labeler, hard_label "
                                         "FROM step_labels WHERE hard_label IS NOT NULL")
    by = {}
    for r in labels:
        by.setdefault((r["run_id"], r["rollout_id"], r["step_index"]), {})[r["labeler"]] = r["hard_label"]
    for pair in data["agreement"]:
        both = [v for v in by.values() if pair["labeler_a"] in v and pair["labeler_b"] in v]
        a, b = [v[pair["labeler_a"]] for v in both], [v[pair["labeler_b"]] for v in both]
        assert pair["steps"] == len(both)
        assert pair["kappa"] == pytest.approx(_kappa_by_hand(a, b))
    assert data["calibration"]["reference"] == "rollouts.true_first_error" and data["calibration"]["bins"]
    costs = data["cost_per_kept_step"]
    assert costs and all(c["tokens_from"] == "cost table" and c["tokens"] > 0 for c in costs)


def test_report_of_an_export_covers_only_its_rollouts(home):
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    done = prm_data("--warehouse", "wh", "report", "--export", "exports/v1", "--out", "reports/v1", cwd=home)
    assert done.returncode == 0, done.stderr
    data = json.loads((home / "reports/v1/report.json").read_text())
    ids = {r for f in (home / "exports/v1").glob("*/*.parquet") if f.parent.name in ("stepwise", "processbench")
           for r in pq.read_table(f, columns=["rollout_id"]).column("rollout_id").to_pylist()}
    assert sum(r["rollouts"] for r in data["steps_per_rollout"]) == len(ids)


# ------------------------------------------------------------------ the README's export, train and eval commands
def bash_block(doc: str, heading: str) -> list[str]:
    """The commands of the first bash block under `## heading` in `doc` (continued lines joined), as written."""
    section = (ROOT / doc).read_text().split(f"\n## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    return [line for line in block.splitlines() if line.strip()]


UPLOAD_MODEL = """
import sys
from huggingface_hub import HfApi
HfApi().create_repo(sys.argv[1], exist_ok=True)
HfApi().upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])
"""


@pytest.mark.network
def test_the_readme_export_train_and_eval_commands_run_as_written_against_a_hub_on_localhost(home, tmp_path):
    """Every line of the README's "Export, train, evaluate", then docs/training.md's "Evaluate", typed in a clone
    (`.venv/bin/prm-data`, `configs/`, the default warehouse, the user's ProcessBench-style files) with HF_ENDPOINT
    on a Hub server on 127.0.0.1 (tests/hub_server.py) that serves the offline test model under the base model id
    the README names and takes the README's push. Not run: docs/training.md's 2000-step and multi-GPU commands."""
    import os

    from hub_server import HubServer
    from test_hub_push import TOKEN

    from prm_data.train.tiny import make_tiny_model

    readme = bash_block("README.md", "Export, train, evaluate")
    docs = bash_block("docs/training.md", "Evaluate")
    base_model = re.search(r" train .*--model (\S+)", "\n".join(readme)).group(1)
    dataset_repo = re.search(r"--push-to-hub (\S+)", "\n".join(readme)).group(1)
    clone = tmp_path / "clone"  # what the relative paths assume: the repository root, after `prm-data run`
    (clone / ".venv/bin").mkdir(parents=True)
    (clone / ".venv/bin/prm-data").symlink_to(CLI)
    shutil.copytree(home / "wh", clone / "warehouse/data")
    shutil.copytree(ROOT / "configs", clone / "configs")
    outside = "".join(json.dumps(r) + "\n" for r in outside_set(home, tmp_path, 12))
    for name in ("processbench.jsonl", "processbench_gsm8k.jsonl"):  # the README's and the docs' file names
        (clone / name).write_text(outside)
    if not (home / "exports/v1/export.json").exists():
        assert prm_data("--warehouse", "wh", "export", "--out", "exports/v1", cwd=home).returncode == 0
    # what `prm-data train --tiny` writes (tokenizer, config, seeded random weights), smaller: a fast epoch
    make_tiny_model(home / "exports/v1", tmp_path / "hub-model", vocab_size=300, hidden_size=16, num_layers=1,
                    num_heads=2, with_weights=True)
    with HubServer(token=TOKEN) as hub:
        env = {**{k: v for k, v in os.environ.items() if k != "PRM_DATA_WAREHOUSE"},
               "PATH": f"{clone / '.venv/bin'}{os.pathsep}{os.environ['PATH']}",  # docs/ type a bare `prm-data`
               "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
        upload = subprocess.run([sys.executable, "-c", UPLOAD_MODEL, base_model, str(tmp_path / "hub-model")],
                                env=env, capture_output=True, text=True, timeout=300)
        assert upload.returncode == 0, upload.stderr[-3000:]
        done = {}
        for line in readme + docs:
            done[line] = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True,
                                        timeout=600)
            assert done[line].returncode == 0, (line, done[line].stdout[-2000:], done[line].stderr[-3000:])
            assert "Traceback" not in done[line].stderr, line
        pushed = hub.files(dataset_repo)
        downloaded = {path for method, path in hub.requests if method == "GET" and "/resolve/" in path}
    assert hub.repos[("dataset", dataset_repo)].private and "README.md" in pushed
    assert any(p.startswith("stepwise/") and p.endswith(".parquet") for p in pushed)
    assert any(re.fullmatch(rf"/{base_model}/resolve/\w+/model\.safetensors", p) for p in downloaded), downloaded

    ckpt = clone / "checkpoints/prm"
    metrics = json.loads((ckpt / "metrics.json").read_text())
    assert metrics["steps"] > 0 and metrics["final_eval_loss"] is not None  # one epoch, evaluated on the test split
    assert json.loads((ckpt / "train_config.json").read_text())["model"] == base_model
    assert (ckpt / "model.safetensors").exists()
    assert (ckpt / "tokenizer.json").read_text() == (tmp_path / "hub-model/tokenizer.json").read_text()
    evaluated = Warehouse(clone / "warehouse/data").rows(
        "SELECT benchmark, metric, threshold, evaluated FROM eval_results")
    of_ckpt = {(r["benchmark"], r["metric"], r["threshold"]) for r in evaluated
               if r["evaluated"].endswith("checkpoints/prm")}
    assert {("processbench", "f1", 0.5), ("best_of_n", "accuracy@min", None)} <= of_ckpt  # README: defaults
    assert {("processbench", "f1", t) for t in (0.3, 0.7)} <= of_ckpt  # docs: -t 0.3 -t 0.5 -t 0.7
    assert (clone / "reports/eval.png").read_bytes()[:4] == b"\x89PNG"
    for line, labelers in ((readme[-1], ("tool_verify", "judge_vote")),
                           (docs[-1], ("tool_verify", "judge_vote", "mc_value"))):
        for labeler in labelers:
            assert re.search(rf"labeler:{labeler}: f1 = [\d.]+ \(n=12\)", done[line].stdout), done[line].stdout
