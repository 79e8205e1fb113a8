"""Fine-tune a PRM on an exported stepwise dataset with accelerate (1 CPU, 1 GPU or many).

One plain loop, no `Trainer`: AdamW, a transformers LR schedule, gradient
accumulation and clipping, bf16 autocast on GPUs that support it. The same code
runs single-process (`prm-data train`) and distributed (`accelerate launch -m
prm_data.train ...` or `torchrun --nproc_per_node N -m prm_data.train ...`):
`Accelerator` reads the launcher's environment, shards the batches and
all-reduces the gradients; only the main process writes the checkpoint.

Written to `output_dir`: the model (LoRA merged into the weights) and tokenizer,
`train_config.json` (the TrainConfig), `train_log.jsonl` (per optimizer step:
loss, learning rate, gradient norm, and the eval loss on the test split where
evaluated) and `metrics.json` (steps, tokens/s, peak GPU memory, wall time,
final eval loss). A progress bar shows the steps; `report_to` sends the same
metrics to tensorboard, wandb, ... through accelerate's trackers, with
`output_dir` as the project folder (tensorboard: event files in
`output_dir/prm-data/`), under transformers' names (`train/loss`, `eval/loss`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from prm_data.train.config import TrainConfig
from prm_data.train.data import PadCollator, tokenize_dataset
from prm_data.train.model import apply_lora, load_model, load_tokenizer, prm_loss

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    losses: list[float] = field(default_factory=list)  # mean loss of each optimizer step
    log: list[dict] = field(default_factory=list)  # per optimizer step: loss, learning_rate, grad_norm[, eval_loss]
    train_tokens: int = 0  # non-padding tokens seen, all processes
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_gpu_memory_bytes: int | None = None  # max over this process's device, None on CPU
    mixed_precision: str = "no"
    num_processes: int = 1
    model: object = field(default=None, repr=False)  # the trained model in memory (LoRA merged)

    def metrics(self) -> dict:
        """The measurements, as written to metrics.json."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("losses", "model", "log")}
        evals = [e["eval_loss"] for e in self.log if "eval_loss" in e]
        out["final_eval_loss"] = evals[-1] if evals else None
        return out


def resolve_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _tokenized(config: TrainConfig, tokenizer, accelerator):
    """(train, eval or None) tokenized splits; the eval split is None when the export has none."""
    from prm_data.export import load_export

    with accelerator.main_process_first():  # rank 0 downloads a Hub dataset, the others read its cache
        dataset = load_export(config.dataset, "stepwise")
    if config.split not in dataset:
        raise ValueError(f"{config.dataset} has no {config.split!r} split (it has {sorted(dataset)})")

    def tokenize(split):
        return tokenize_dataset(dataset[split], tokenizer, config.step_separator, config.max_length,
                                config.max_completion_length, config.train_on_last_step_only)

    has_eval = config.eval_split is not None and config.eval_split in dataset and config.eval_split != config.split
    return tokenize(config.split), (tokenize(config.eval_split) if has_eval else None)


# Each tracker accelerate knows, with the packages any one of which it can log through (first: the one to
# suggest). tensorboard: accelerate's TensorBoardTracker takes torch.utils.tensorboard's SummaryWriter when
# the `tensorboard` package is installed, else tensorboardX's, which writes the same event files.
TRACKER_PACKAGES = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb",), "mlflow": ("mlflow",),
                    "comet_ml": ("comet_ml",), "aim": ("aim",), "clearml": ("clearml",), "dvclive": ("dvclive",)}


def _check_trackers(report_to: tuple[str, ...]) -> None:
    import importlib.util

    for name in report_to:
        if name not in TRACKER_PACKAGES:
            raise ValueError(f"report_to {name!r} is not a tracker accelerate knows ({', '.join(TRACKER_PACKAGES)})")
        packages = TRACKER_PACKAGES[name]
        if all(importlib.util.find_spec(p) is None for p in packages):
            raise ValueError(f"report_to {name} needs the package {' or '.join(f'`{p}`' for p in packages)}: "
                             f"pip install {packages[0]}")


def tracker_metrics(entry: dict) -> dict:
    """A train_log.jsonl entry under the names transformers' Trainer gives its trackers (`rewrite_logs`):
    `train/loss`, `train/learning_rate`, `train/grad_norm`, `eval/loss`, so runs of both compare in one board."""
    return {(f"eval/{k[len('eval_'):]}" if k.startswith("eval_") else f"train/{k}"): v
            for k, v in entry.items() if k != "step" and v is not None}


@torch.no_grad()
def evaluate_loss(model, loader, accelerator, label_mode: str) -> float:
    """Mean PRM loss over the eval loader (every process's batches), the model left in train mode."""
    model.eval()
    total = torch.zeros((), device=accelerator.device)
    batches = torch.zeros((), device=accelerator.device)
    for batch in loader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += prm_loss(logits, batch["labels"], batch["soft_labels"], label_mode).float()
        batches += 1
    model.train()
    total, batches = accelerator.reduce(total, reduction="sum"), accelerator.reduce(batches, reduction="sum")
    return float(total / batches) if batches.item() else float("nan")


def train_prm(config: TrainConfig) -> TrainResult:
    """Train, save the checkpoint and logs to `config.output_dir`, and return the measurements."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    _check_trackers(config.report_to)
    precision = resolve_precision(config.mixed_precision)
    accelerator = Accelerator(mixed_precision=precision,
                              gradient_accumulation_steps=config.gradient_accumulation_steps,
                              log_with=list(config.report_to) or None, project_dir=str(config.output_dir))
    set_seed(config.seed)
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    model = load_model(config.model, tokenizer.pad_token_id)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if config.lora:
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings would cut the checkpointed graph
        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
    data, eval_data = _tokenized(config, tokenizer, accelerator)
    loader = DataLoader(data, batch_size=config.per_device_batch_size, shuffle=True,
                        collate_fn=PadCollator(tokenizer.pad_token_id),
                        generator=torch.Generator().manual_seed(config.seed))
    eval_loader = None if eval_data is None else DataLoader(
        eval_data, batch_size=config.per_device_batch_size, collate_fn=PadCollator(tokenizer.pad_token_id))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    updates_per_epoch = max(1, math.ceil(len(loader) / accelerator.num_processes / config.gradient_accumulation_steps))
    total = config.max_steps or max(1, math.ceil(updates_per_epoch * config.num_epochs))
    scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=int(config.warmup_ratio * total),
                              num_training_steps=total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    if config.report_to:
        accelerator.init_trackers("prm-data", config=config.model_dump(mode="json", exclude={"report_to"}))
    eval_every = config.eval_steps or updates_per_epoch

    result = TrainResult(output_dir=str(config.output_dir), steps=0, mixed_precision=precision,
                         num_processes=accelerator.num_processes)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="train", unit="step", disable=not (config.progress_bar and accelerator.is_main_process))
    grad_norm = None
    window: list[torch.Tensor] = []
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)
    started = time.perf_counter()
    while result.steps < total:
        for batch in loader:
            with accelerator.accumulate(model):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = prm_loss(logits, batch["labels"], batch["soft_labels"], config.label_mode)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window.append(loss.detach())
            tokens += batch["attention_mask"].sum()
            if not accelerator.sync_gradients:
                continue
            step_loss = accelerator.reduce(torch.stack(window).mean(), reduction="mean").item()
            window.clear()
            result.losses.append(step_loss)
            result.steps += 1
            entry = {"step": result.steps, "loss": step_loss, "learning_rate": scheduler.get_last_lr()[0],
                     "grad_norm": None if grad_norm is None else float(grad_norm)}
            if eval_loader is not None and (result.steps % eval_every == 0 or result.steps == total):
                entry["eval_loss"] = evaluate_loss(model, eval_loader, accelerator, config.label_mode)
            result.log.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", **({"eval_loss": f"{entry['eval_loss']:.4f}"}
                                                      if "eval_loss" in entry else {}))
            if config.report_to:
                accelerator.log(tracker_metrics(entry), step=result.steps)
            if accelerator.is_main_process and (result.steps % config.logging_steps == 0 or result.steps == total):
                log.info("step %d/%d loss %.4f lr %.2e grad_norm %s%s", result.steps, total, step_loss,
                         entry["learning_rate"], entry["grad_norm"],
                         f" eval_loss {entry['eval_loss']:.4f}" if "eval_loss" in entry else "")
            if result.steps >= total:
                break
    bar.close()
    if config.report_to:
        accelerator.end_training()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        result.peak_gpu_memory_bytes = int(torch.cuda.max_memory_allocated())
    result.train_seconds = time.perf_counter() - started
    result.train_tokens = int(accelerator.reduce(tokens, reduction="sum").item())
    result.tokens_per_second = result.train_tokens / result.train_seconds if result.train_seconds else 0.0
    result.model = _save(accelerator, model, tokenizer, config, result)
    return result


def _save(accelerator, model, tokenizer, config: TrainConfig, result: TrainResult):
    """Write the checkpoint and logs (main process only); returns the unwrapped, merged model."""
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if config.lora:
        model = model.merge_and_unload()  # a plain checkpoint: scoring needs no peft
    if not accelerator.is_main_process:
        return model
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / "train_config.json").write_text(config.model_dump_json(indent=2) + "\n")
    with open(out / "train_log.jsonl", "w") as fh:
        for entry in result.log:
            fh.write(json.dumps(entry) + "\n")
    (out / "metrics.json").write_text(json.dumps(result.metrics(), indent=2) + "\n")
    return model
