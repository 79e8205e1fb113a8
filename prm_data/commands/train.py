"""`prm-data train --dataset DIR --model PATH_OR_CONFIG`: fine-tune a PRM on an exported stepwise set.

Single process here; for several GPUs run the same arguments under a launcher:
`accelerate launch -m prm_data.train ...` or `torchrun --nproc_per_node N -m prm_data.train ...`.
Any TrainConfig field not exposed as a flag can be set with `--set field=value`
or in a YAML file given with `--config`. See docs/training.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, config_error, console, fail


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Export folder or Hub dataset repo id."),
    model: str = typer.Option(None, "--model", "-m", help="Checkpoint (with weights) or config folder/file "
                              "(required unless --tiny)."),
    tiny: bool = typer.Option(False, "--tiny", help="Only build the offline test model into --out: a tokenizer "
                              "trained on the export, a small Llama, random weights; no download, no training."),
    out: Path = typer.Option(Path("checkpoints/prm"), "--out", "--output-dir", "-o",
                             help="Checkpoint folder to write."),
    config_file: Path = typer.Option(None, "--config", help="YAML with TrainConfig fields."),
    label_mode: str = typer.Option(None, help="hard (labels, cross-entropy) or soft (values, BCE)."),
    max_steps: int = typer.Option(None, help="Optimizer steps (default: one epoch)."),
    learning_rate: float = typer.Option(None, "--lr", help="Peak learning rate (default 1e-5)."),
    batch_size: int = typer.Option(None, help="Sequences per device per micro-batch (default 8)."),
    lora: bool = typer.Option(None, "--lora/--no-lora", help="Train LoRA adapters (peft) and the head only."),
    overrides: list[str] = typer.Option(None, "--set", help="Any TrainConfig field: --set warmup_ratio=0.1."),
) -> None:
    """Train a token-classification PRM; prints tokens/s and peak GPU memory when done.

    Offline test model: prm-data train --tiny --dataset exports/v1 --out checkpoints/tiny
    """
    import yaml
    from pydantic import ValidationError

    from prm_data.train.config import TrainConfig
    from prm_data.train.loop import train_prm

    from prm_data.export import is_local_path

    if is_local_path(dataset) and not Path(dataset).exists():  # before any model is loaded
        fail(f"{dataset}: no such export folder (write one with `prm-data export --out {dataset}`)", EXIT_ERROR)
    if tiny:
        from prm_data.train.tiny import make_tiny_model

        try:
            path = make_tiny_model(dataset, out, with_weights=True)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            fail(str(exc), EXIT_ERROR)
        console.print(f"tiny model: {path} (tokenizer, config, random weights)")
        return
    if model is None:
        fail("--model is required (or --tiny to build the offline test model)", EXIT_USAGE)
    if _names_a_path(model) and not Path(model).expanduser().exists():  # a path, not a Hub id: say so plainly
        fail(f"--model {model}: no such file or folder (a checkpoint or config folder, a config file, or a "
             "Hub model id like Qwen/Qwen2.5-Math-1.5B)", EXIT_ERROR)
    try:
        fields: dict = (yaml.safe_load(config_file.read_text()) or {}) if config_file else {}
    except (OSError, yaml.YAMLError) as exc:
        fail(f"bad --config {config_error(config_file, exc)}", EXIT_USAGE)
    fields.update({"dataset": dataset, "model": model, "output_dir": str(out)})
    flags = {"label_mode": label_mode, "max_steps": max_steps, "learning_rate": learning_rate,
             "per_device_batch_size": batch_size, "lora": lora}
    fields.update({k: v for k, v in flags.items() if v is not None})
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set wants field=value, got {item!r}", EXIT_USAGE)
        fields[key.strip()] = yaml.safe_load(value)
    try:
        config = TrainConfig(**fields)
    except ValidationError as exc:
        fail(f"invalid training options: {exc}", EXIT_USAGE)
    try:
        result = train_prm(config)
    except (FileNotFoundError, OSError, ValueError) as exc:  # a wrong path or id: one line, no Hub traceback
        fail(_one_line(exc), EXIT_ERROR)
    if int(os.environ.get("RANK", "0")) == 0:
        memory = (f"{result.peak_gpu_memory_bytes / 2**30:.2f} GiB" if result.peak_gpu_memory_bytes is not None
                  else "n/a (no GPU)")
        console.print(f"trained {result.steps} steps on {result.num_processes} process(es), "
                      f"precision {result.mixed_precision}; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
        console.print(f"tokens/s {result.tokens_per_second:.0f}; peak GPU memory {memory}")
        console.print(f"checkpoint: {result.output_dir} (metrics.json, train_log.jsonl)")


def _names_a_path(model: str) -> bool:
    """Whether --model can only mean a file or folder here: absolute, ./ ../ ~, more than one `/`, or a file
    name (`gpt2` and `owner/name` may be Hub ids)."""
    return (model.startswith(("/", "./", "../", "~", ".\\")) or model.count("/") > 1
            or Path(model).suffix.lower() in (".json", ".yaml", ".yml", ".gguf", ".safetensors", ".bin"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < 400 else text[:400] + " ..."
