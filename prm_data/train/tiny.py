"""A tiny PRM base model built locally: a tokenizer trained on the export, a config, no download.

For tests, demos and `deploy/gpu_check.sh`: `make_tiny_model(export_dir, out_dir)`
trains a byte-level BPE tokenizer (the `tokenizers` library) on the prompts and
steps of the stepwise train split and writes it, wrapped as a
`PreTrainedTokenizerFast`, next to a small Llama config. `load_model` then
initialises the weights from that config (prm_data/train/model.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer (any text encodes; no unknown tokens) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def make_tiny_model(export_dir: str | os.PathLike, out_dir: str | os.PathLike, vocab_size: int = 1024,
                    hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    max_positions: int = 2048, with_weights: bool = False, seed: int = 0) -> Path:
    """Write a tokenizer trained on the export's stepwise train text and a small Llama config to `out_dir`.

    With `with_weights`, also randomly initialised weights (seeded) of a 2-label token classifier, so
    `AutoModelForTokenClassification.from_pretrained(out_dir)` works as for a Hub model
    (`prm-data train --tiny`).
    """
    from transformers import LlamaConfig

    from prm_data.export import load_export

    train = load_export(export_dir, "stepwise")["train"]
    texts = list(train["prompt"]) + [step for steps in train["completions"] for step in steps]
    tokenizer = train_tokenizer(texts, vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    config.save_pretrained(str(out))
    if with_weights:
        import torch

        from prm_data.train.model import load_model

        torch.manual_seed(seed)
        load_model(str(out), tokenizer.pad_token_id).save_pretrained(str(out), safe_serialization=True)
    return out
