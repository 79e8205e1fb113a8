"""Hugging Face datasets as problem sources, via `datasets.load_dataset`.

`NAME` is a Hub dataset id (`openai/gsm8k`), a local dataset directory (data
files such as `train.jsonl` or `data/train-*.parquet`, which `load_dataset`
reads offline), or a directory written by `Dataset.save_to_disk` (read with
`load_from_disk`). A config name follows a colon: `openai/gsm8k:main`.

`datasets` is imported lazily: it is slow to import and only this source needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prm_data.sources.files import SourceError
from prm_data.sources.validate import RawRecord


def split_name(spec: str) -> tuple[str, str | None]:
    """`NAME[:CONFIG]` -> (name, config). A local path is never split."""
    if Path(spec).exists() or ":" not in spec:
        return spec, None
    name, config = spec.rsplit(":", 1)
    return name, config or None


def _is_saved_to_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def load_split(name: str, config: str | None = None, split: str = "train", cache_dir: str | None = None):
    """The `datasets.Dataset` for one split; SourceError with the reason when it cannot be loaded."""
    import datasets

    path = Path(name)
    try:
        if _is_saved_to_disk(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise SourceError(f"{name}: no split {split!r}; available: {', '.join(loaded)}")
                return loaded[split]
            return loaded
        return datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)
    except SourceError:
        raise
    except (ValueError, FileNotFoundError, OSError, ConnectionError, KeyError) as exc:
        raise SourceError(f"cannot load Hugging Face dataset {name!r}"
                          f"{f' (config {config!r})' if config else ''} split {split!r}: {exc}") from exc
    except Exception as exc:  # datasets raises its own hierarchy (DatasetNotFoundError, ...)
        if type(exc).__module__.startswith(("datasets", "huggingface_hub", "fsspec", "requests", "httpx")):
            raise SourceError(f"cannot load Hugging Face dataset {name!r} split {split!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
        raise


def read_hf(name: str, config: str | None = None, split: str = "train", limit: int | None = None,
            cache_dir: str | None = None) -> Iterator[RawRecord]:
    """Records of one split, in order, at most `limit`; loading errors raise here, not on iteration."""
    dataset = load_split(name, config, split, cache_dir)
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(range(limit))
    return (RawRecord(f"row {number}", dict(row)) for number, row in enumerate(dataset, start=1))
