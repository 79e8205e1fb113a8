"""`prm-data export --push-to-hub` against a Hub-compatible server on 127.0.0.1 (tests/hub_server.py).

The CLI and the reader run in subprocesses, because `HF_ENDPOINT` must be set
before `datasets` / `huggingface_hub` are imported. `HF_HUB_DISABLE_XET=1`: this
covers the Hub HTTP API and LFS uploads, not Xet storage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from export_fixture import build_fixture_warehouse
from hub_server import HubServer

from prm_data.stepwise_rows import write_final_labels

pytestmark = [pytest.mark.network, pytest.mark.slow]

TOKEN = "hf_TestSecretToken0123456789abcdef"
REPO = "tester/prm-export"
READ_BACK = r"""
import json, sys
from datasets import load_dataset
out = {}
for fmt in ("stepwise", "pairs", "processbench"):
    try:
        dsd = load_dataset(sys.argv[1], fmt, cache_dir=sys.argv[2])
    except ValueError as exc:  # a config the card does not declare
        out[fmt] = {"error": str(exc)[:200]}
        continue
    out[fmt] = {split: ds.to_list() for split, ds in dsd.items()}
print(json.dumps(out))
"""


def _env(hub: HubServer, tmp_path: Path) -> dict:
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "hf_home"), "HF_DEBUG": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "PYTHONUNBUFFERED": "1"}


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prm_data.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _local_rows(folder: Path) -> dict:
    from prm_data.export import FORMATS, load_export

    out = {}
    for fmt in FORMATS:
        if (folder / "arrow" / fmt).exists():
            out[fmt] = {split: ds.to_list() for split, ds in load_export(folder, fmt).items()}
    return out


def _smaller_warehouse(root: Path):
    """The fixture without problem p-1: fewer stepwise/processbench rows and no pairs at all."""
    wh = build_fixture_warehouse(root)
    write_final_labels(wh, [r for r in wh.rows("SELECT * FROM final_labels") if r["problem_id"] != "p-1"],
                       "run-fixture", "final")
    wh.write_shard("tree_nodes", [r for r in wh.rows("SELECT * FROM tree_nodes") if r["problem_id"] != "p-1"],
                   run_id="run-fixture", shard="tree")
    return wh


def test_push_twice_then_load_dataset_reads_back_exactly_the_second_export(tmp_path):
    big, small = build_fixture_warehouse(tmp_path / "wh-big"), _smaller_warehouse(tmp_path / "wh-small")
    with HubServer(token=TOKEN) as hub:
        env = _env(hub, tmp_path)
        first = _cli(env, "--warehouse", str(big.root), "export", "--out", str(tmp_path / "out1"),
                     "--test-fraction", "0.5", "--pair-min-samples", "2", "--push-to-hub", REPO, "--private",
                     "--max-shard-size", "1KB")
        assert first.returncode == 0, first.stderr[-3000:]
        files_after_first = set(hub.files(REPO))
        assert {"stepwise/test-00000-of-00002.parquet", "stepwise/test-00001-of-00002.parquet",
                "stepwise/train-00000-of-00001.parquet", "pairs/train-00000-of-00002.parquet"} \
            <= files_after_first, sorted(files_after_first)
        assert hub.repos[("dataset", REPO)].private
        assert any(path.endswith(".git/info/lfs/objects/batch") for _, path in hub.requests)

        second = _cli(env, "--warehouse", str(small.root), "export", "--out", str(tmp_path / "out2"),
                      "--test-fraction", "0.5", "--pair-min-samples", "2", "--push-to-hub", REPO)
        assert second.returncode == 0, second.stderr[-3000:]
        files = set(hub.files(REPO))
        data_files = sorted(f for f in files if f.endswith(".parquet"))
        assert data_files == ["processbench/test-00000-of-00001.parquet", "stepwise/test-00000-of-00001.parquet"]

        read = subprocess.run([sys.executable, "-c", READ_BACK, REPO, str(tmp_path / "cache")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, read.stderr[-3000:]
        card = yaml.safe_load(hub.files(REPO)["README.md"].decode().split("---")[1])
        provenance = json.loads(hub.files(REPO)["export.json"])

    from_hub = json.loads(read.stdout.strip().splitlines()[-1])
    expected = _local_rows(tmp_path / "out2")
    assert from_hub["stepwise"] == expected["stepwise"]
    assert from_hub["processbench"] == expected["processbench"]
    assert set(expected) == {"stepwise", "processbench"} and "error" in from_hub["pairs"]
    assert sum(len(rows) for rows in from_hub["stepwise"].values()) == 4
    # the provenance file is pushed beside the card, which keeps its metadata next to push_to_hub's dataset_info
    assert provenance["counts"]["stepwise"] == {"train": 0, "test": 4}
    assert provenance["runs"][0]["git_sha"] == "abc123"
    assert card["license"] == "unknown" and card["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in card["configs"]} == {"stepwise", "processbench"}
    assert "dataset_info" in card
    assert f"{hub.url}/datasets/{REPO}" in first.stdout  # the dataset's URL, to click
    for proc in (first, second, read):
        assert TOKEN not in proc.stdout + proc.stderr
    # HF_DEBUG logged every request (as curl commands) on stderr, so the check above covered the debug logs
    assert "authorization: <TOKEN>" in first.stderr


def test_a_rejected_push_names_the_failure_but_never_the_token(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    with HubServer(token=TOKEN) as hub:
        hub.reject_commits_with = "commit refused; request headers were {headers}"
        proc = _cli(_env(hub, tmp_path), "--warehouse", str(wh.root), "export", "--out", str(tmp_path / "out"),
                    "--push-to-hub", REPO)
    assert proc.returncode == 1
    assert "commit refused" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert (tmp_path / "out" / "README.md").exists()  # the local export was written before the push


def test_a_wrong_token_is_refused_by_the_server_and_not_echoed(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    with HubServer(token="hf_the_right_one") as hub:
        proc = _cli(_env(hub, tmp_path), "--warehouse", str(wh.root), "export", "--out", str(tmp_path / "out"),
                    "--push-to-hub", REPO)
        assert hub.repos == {}
    assert proc.returncode == 1
    assert "401" in proc.stderr or "Unauthorized" in proc.stderr or "credentials" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr


def test_a_missing_token_is_said_in_one_line_before_anything_is_exported_or_uploaded(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    with HubServer(token=TOKEN) as hub:
        env = {k: v for k, v in _env(hub, tmp_path).items() if k != "HF_TOKEN"}
        proc = _cli(env, "--warehouse", str(wh.root), "export", "--out", str(tmp_path / "out"), "--push-to-hub", REPO)
        assert hub.requests == [] and hub.repos == {}
    assert proc.returncode == 1
    assert [l for l in proc.stderr.splitlines() if l.strip()] == [
        "error: --push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was "
        "exported or uploaded)"]
    assert not (tmp_path / "out").exists()
