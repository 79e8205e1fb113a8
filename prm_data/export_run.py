"""One export, end to end: build every format, write the folder with its card, push when asked.

Its own module because it joins the two halves of an export: `prm_data.export`
(the formats, their rows and the folder) and `prm_data.dataset_card` (the card,
which reads export's constants); neither imports the other's caller, so the
import graph has no circle.
"""

from __future__ import annotations

import json
import logging
import os

from prm_data.dataset_card import card_metadata, render_card
from prm_data.export import EmptyExport, ExportConfig, ExportResult, build_export, counts_of, resolve_policy
from prm_data.export_files import ExportFolder
from prm_data.export_hub import push_export
from prm_data.exports import formats as trainer_formats
from prm_data.warehouse import Warehouse

log = logging.getLogger(__name__)


def run_export(warehouse: Warehouse, out_dir: str | os.PathLike, config: ExportConfig | None = None,
               push_to_hub: str | None = None, private: bool = False,
               max_shard_size: str | int | None = None) -> ExportResult:
    """Build every format, write the folder with its card, and optionally push it to the Hub."""
    config = resolve_policy(warehouse, config or ExportConfig())
    trainer_cards: dict = {}
    with ExportFolder(out_dir) as folder:  # each format's files are written as soon as it is built
        datasets = build_export(warehouse, config, trainer_cards, on_built=folder.add)
        if not any(dsd for dsd in datasets.values()):
            raise EmptyExport(f"nothing to export: no kept final labels under policy {config.policy!r}"
                              + (f" in run {config.run_id!r}" if config.run_id else ""))
        metadata = card_metadata(warehouse, config, datasets)
        if trainer_cards:
            metadata["trainer_formats"] = trainer_formats.card_sections(datasets, trainer_cards)
        path = folder.commit(render_card(metadata, config), metadata)
    counts = counts_of(datasets)
    log.info("exported %s to %s", json.dumps(counts, sort_keys=True), path)
    repo = push_export(path, push_to_hub, private=private, max_shard_size=max_shard_size) if push_to_hub else None
    return ExportResult(path=path, repo_id=repo, counts=counts, policy=config.policy)
