"""Push a written export folder to the Hugging Face Hub, one config per format; the token never shows.

Tested against tests/hub_server.py, a Hub-compatible HTTP server on 127.0.0.1
(tests/test_hub_push.py, tests/test_trainer_exports_hub.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prm_data.export_config import DEFAULT_FORMAT, FORMATS, PROVENANCE_FILE, HubPushError

log = logging.getLogger(__name__)


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text


def push_export(export_dir: str | os.PathLike, repo_id: str, private: bool = False,
                max_shard_size: str | int | None = None) -> str:
    """Push a written export folder to the Hub as a dataset repo; returns the repo id.

    The card is committed first; then every format is pushed as its own config
    with `datasets.push_to_hub`, which adds the `dataset_info` / `configs`
    metadata to the card and deletes shards a previous push left in that
    config's folder. Folders of formats that have no rows any more are deleted.
    The token comes from `HF_TOKEN` or the Hugging Face login; any error is
    re-raised as `HubPushError` with the token removed from the message.
    """
    from datasets import load_from_disk
    from huggingface_hub import HfApi, get_token

    root = Path(export_dir)
    secret = get_token()  # read only to scrub it from error messages
    try:
        api = HfApi()
        # private=None leaves a new repo to the namespace's default visibility
        api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True)
        api.upload_file(path_or_fileobj=str(root / "README.md"), path_in_repo="README.md", repo_id=repo_id,
                        repo_type="dataset", commit_message="Update the dataset card")
        api.upload_file(path_or_fileobj=str(root / PROVENANCE_FILE), path_in_repo=PROVENANCE_FILE,
                        repo_id=repo_id, repo_type="dataset", commit_message="Update the export's provenance")
        pushed = []
        for fmt in FORMATS:
            if not (root / "arrow" / fmt).exists():
                continue
            dsd = load_from_disk(str(root / "arrow" / fmt))
            dsd.push_to_hub(repo_id, config_name=fmt, set_default=fmt == DEFAULT_FORMAT, private=private or None,
                            max_shard_size=max_shard_size, commit_message=f"Upload the {fmt} export")
            pushed.append(fmt)
        present = {f.split("/", 1)[0] for f in api.list_repo_files(repo_id, repo_type="dataset")}
        for fmt in sorted(set(FORMATS) - set(pushed) & present):
            api.delete_folder(fmt, repo_id=repo_id, repo_type="dataset",
                              commit_message=f"Remove the {fmt} export: it has no rows now")
    except Exception as exc:  # noqa: BLE001 - re-raised below, scrubbed of the token
        message = _scrub(f"pushing to {repo_id} failed: {type(exc).__name__}: {exc}", secret)
        raise HubPushError(message) from None
    log.info("pushed %s to the Hub dataset %s", ", ".join(pushed) or "nothing", repo_id)
    return repo_id
