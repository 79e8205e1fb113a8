"""Prefect settings for running on one machine without any setup by hand.

Must run before `prefect` is imported (settings are read at import). Values
already set in the environment win, so a real deployment's settings
(PREFECT_API_URL of a `prefect server start`, a work pool's env) are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULTS = {
    "PREFECT_HOME": str(PROJECT_ROOT / ".prefect"),
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # a cold ephemeral server takes 5-9 s on 2 cores; the default timeout is too tight under load
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_UI_ENABLED": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def results_dir() -> Path:
    path = Path(os.environ.get("PREFECT_HOME", DEFAULTS["PREFECT_HOME"])) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path
