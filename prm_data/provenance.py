"""Where a result came from: the git commit and package versions stored with every run and export.

Its own small module, importing nothing of prm_data, so the `runs` rows
(prm_data/pipeline/runs.py) and the dataset card (prm_data/dataset_card.py)
both read it without importing each other.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("prm-data", "prefect", "duckdb", "pyarrow", "datasets", "transformers", "torch", "openai",
            "math-verify", "vllm")


def git_sha() -> str | None:
    """The commit of the checkout prm_data runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[1])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    """Installed version of each package results depend on (None: not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
