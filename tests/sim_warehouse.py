"""A realistic small warehouse for the trainer-export tests: a real `prm-data run` of configs/sim.yaml, shrunk.

The synthetic policy writes solutions in several styles with known errors, the tool
verifier checks their arithmetic, the simulated judge votes per step (with its
configured accuracy, so some votes disagree with the final labels) and the final
labels come from the consensus policy: the inputs the export sees in production,
only fewer of them. It runs through the CLI in a subprocess (`--serial`), as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from prm_data.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]


def build_sim_warehouse(root: Path, problems: int = 10, rollouts: int = 4,
                        labelers: tuple[str, ...] = ("mc_value", "tool_verify", "judge_vote")) -> Warehouse:
    """`labelers`: a subset of configs/sim.yaml's (mc_value, omega_prm, progress, tool_verify, judge_vote, rubric)."""
    config = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    config["problems"]["source"] = f"bank:{problems}:3:0"
    config["rollouts"]["n"] = rollouts
    config["labeling"]["labelers"] = list(labelers)
    config["labeling"]["mc_value"]["k"] = 4
    config["labeling"]["judge_vote"]["judges"][0]["samples"] = 3
    config["export"] = {"enabled": False}
    config.pop("warehouse", None)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "sim-small.yaml"
    path.write_text(yaml.safe_dump(config))
    boot = "import sys\nsys.argv[0] = 'prm-data'\nfrom prm_data.cli import app\napp()\n"
    proc = subprocess.run([sys.executable, "-c", boot, "--warehouse", str(root / "wh"), "run", "-c", str(path),
                           "--serial"], cwd=root, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the sim run failed: {proc.stderr[-3000:]}")
    return Warehouse(root / "wh")
