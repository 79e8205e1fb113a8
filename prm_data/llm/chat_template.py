"""Client-side chat templates, for servers reached through raw `/v1/completions`.

Continuing a partial assistant answer through `/v1/completions` means
rendering the conversation to text ourselves and appending the prefix after
the assistant header. Two ways:

- `chatml` (the default, documented here): every message is
  `<|im_start|>{role}\\n{content}<|im_end|>\\n`, then `<|im_start|>assistant\\n`
  and the prefix. This is the template of SmolLM2, Qwen2/2.5 and many others,
  and the one the test server (prm_data/serve_sim.py) parses back.
- a Hugging Face tokenizer directory or a `.gguf` file (`tokenizer_path`):
  its own `chat_template`, applied with `add_generation_prompt=True`, loaded
  from local files only (never downloaded).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from prm_data.llm.types import Message

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_TURN = re.compile(re.escape(IM_START) + r"(\w+)\n(.*?)" + re.escape(IM_END) + r"\n?", re.S)


def render_chatml(messages: Sequence[Message], assistant_prefix: str | None = None) -> str:
    """The ChatML text of `messages` with an open assistant turn holding `assistant_prefix`."""
    parts = [f"{IM_START}{m.role}\n{m.content}{IM_END}\n" for m in messages]
    parts.append(f"{IM_START}assistant\n{assistant_prefix or ''}")
    return "".join(parts)


def parse_chatml(prompt: str) -> tuple[list[Message], str | None]:
    """Invert `render_chatml`: (messages, assistant prefix or None).

    Text that is not ChatML comes back as one user message with no prefix.
    """
    messages = [Message(role, content) for role, content in _TURN.findall(prompt)]
    tail_at = prompt.rfind(IM_START + "assistant\n")
    closed_until = 0
    for m in _TURN.finditer(prompt):
        closed_until = m.end()
    if not messages and tail_at < 0:
        return [Message("user", prompt)], None
    prefix = None
    if tail_at >= closed_until:
        prefix = prompt[tail_at + len(IM_START + "assistant\n"):]
    return messages, prefix


@lru_cache(maxsize=8)
def _hf_tokenizer(path: str):
    """A tokenizer from a local directory, or from a .gguf file's embedded vocabulary and template."""
    from pathlib import Path

    from transformers import AutoTokenizer

    p = Path(path)
    if p.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def render_hf(tokenizer_path: str, messages: Sequence[Message], assistant_prefix: str | None = None) -> str:
    """Render with a local Hugging Face tokenizer's own chat template, then append the prefix."""
    tok = _hf_tokenizer(tokenizer_path)
    text = tok.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                   tokenize=False, add_generation_prompt=True)
    return text + (assistant_prefix or "")


def render_prompt(messages: Sequence[Message], assistant_prefix: str | None = None,
                  tokenizer_path: str | None = None) -> str:
    if tokenizer_path:
        return render_hf(tokenizer_path, messages, assistant_prefix)
    return render_chatml(messages, assistant_prefix)
