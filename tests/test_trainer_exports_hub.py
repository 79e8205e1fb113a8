"""`prm-data export` with the trainer configs, pushed to a Hub server on 127.0.0.1 (tests/hub_server.py).

The CLI and the reader run in subprocesses (HF_ENDPOINT must be set before `datasets`
is imported), as in tests/test_hub_push.py, whose helpers this reuses.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from export_fixture import QUESTIONS, STEPS, build_fixture_warehouse
from hub_server import HubServer
from test_hub_push import TOKEN, _cli, _env

pytestmark = [pytest.mark.network, pytest.mark.slow]

REPO = "tester/prm-trainers"
TRAINER_CONFIGS = ("rl_rewards", "openrlhf", "verifier_sft")
READ_BACK = r"""
import json, sys
from datasets import load_dataset
print(json.dumps({fmt: {split: ds.to_list() for split, ds in load_dataset(sys.argv[1], fmt, cache_dir=sys.argv[2]).items()}
                  for fmt in sys.argv[3:]}))
"""


@pytest.fixture
def tokenizer_dir(tmp_path):
    from prm_data.train.tiny import train_tokenizer

    texts = list(QUESTIONS.values()) + [s for _, steps in STEPS.values() for s in steps]
    train_tokenizer(texts, 300).save_pretrained(str(tmp_path / "tok"))
    return tmp_path / "tok"


def test_every_config_is_pushed_with_its_card_section_and_reads_back_as_written(tmp_path, tokenizer_dir):
    from prm_data.export import FORMATS, load_export

    wh = build_fixture_warehouse(tmp_path / "wh")
    formats = [arg for fmt in FORMATS for arg in ("-f", fmt)]
    with HubServer(token=TOKEN) as hub:
        env = _env(hub, tmp_path)
        out = tmp_path / "out"
        proc = _cli(env, "--warehouse", str(wh.root), "export", "--out", str(out), "--test-fraction", "0.5",
                    "--pair-min-samples", "2", *formats, "--reward-transform", "potential", "--reward-gamma", "0.9",
                    "--tokenizer", str(tokenizer_dir), "--push-to-hub", REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        read = subprocess.run([sys.executable, "-c", READ_BACK, REPO, str(tmp_path / "cache"), *TRAINER_CONFIGS],
                              env=env, capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, read.stderr[-3000:]
        card = yaml.safe_load(hub.files(REPO)["README.md"].decode().split("---")[1])
        provenance = json.loads(hub.files(REPO)["export.json"])  # beside the card: the run configs and sections
    from_hub = json.loads(read.stdout.strip().splitlines()[-1])
    for fmt in TRAINER_CONFIGS:
        local = {split: ds.to_list() for split, ds in load_export(out, fmt).items()}
        assert from_hub[fmt] == local and sum(map(len, local.values())) > 0, fmt
    assert {c["config_name"] for c in card["configs"]} == set(FORMATS)
    sections = provenance["trainer_formats"]
    assert sections["rl_rewards"]["transform"]["transform"] == "potential"
    assert sections["rl_rewards"]["transform"]["gamma"] == 0.9
    assert sections["rl_rewards"]["tokenizer"] == str(tokenizer_dir)
    assert sections["openrlhf"]["placeholder_token"] == "ки"
    assert sections["verifier_sft"]["kept"] == sum(map(len, from_hub["verifier_sft"].values()))
    for fmt in TRAINER_CONFIGS:
        balance = sections[fmt]["label_balance"]
        assert set(balance) == {s for s, rows in from_hub[fmt].items() if rows}, fmt
    rl_rows = [r for rows in from_hub["rl_rewards"].values() for r in rows]
    assert all(r["step_end_token"] is not None and len(r["step_end_token"]) == len(r["steps"]) for r in rl_rows)
    assert sections["openrlhf"]["label_balance"]["train"]["steps"] == sum(
        len(r["label"]) for r in from_hub["openrlhf"]["train"])
    assert TOKEN not in proc.stdout + proc.stderr


def test_a_tokenizer_that_is_not_on_disk_is_a_one_line_error_and_nothing_is_written(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    proc = _cli({**_env_offline(tmp_path)}, "--warehouse", str(wh.root), "export", "--out", str(tmp_path / "out"),
                "-f", "rl_rewards", "--tokenizer", str(tmp_path / "no-such-tokenizer"))
    assert proc.returncode == 1
    assert "could not be loaded from local files" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def _env_offline(tmp_path):
    import os

    return {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
