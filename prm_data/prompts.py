"""Prompts are Jinja2 files in `prompts/`, versioned by name: `<task>.v<N>.jinja`.

A template renders to chat messages: the text before a line `=== user ===` is
the system message (optional), the text after it the user message. The
template's stem (e.g. `judge_step.v1`) is its version and is stored with every
judgment, rubric and rollout it produced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from prm_data.llm.types import Message

USER_MARKER = "=== user ==="


def prompts_dir() -> Path:
    return Path(os.environ.get("PRM_DATA_PROMPTS", Path(__file__).resolve().parents[1] / "prompts"))


@dataclass(frozen=True)
class RenderedPrompt:
    version: str  # the template's stem, e.g. "solve.v1"
    messages: tuple[Message, ...]


@lru_cache(maxsize=None)
def _env(root: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(version: str, **variables) -> RenderedPrompt:
    """Render `prompts/<version>.jinja` into chat messages; missing variables are errors."""
    template = _env(str(prompts_dir())).get_template(f"{version}.jinja")
    text = template.render(**variables)
    messages = []
    if USER_MARKER in text:
        system, user = text.split(USER_MARKER, 1)
        if system.strip():
            messages.append(Message("system", system.strip()))
    else:
        user = text
    messages.append(Message("user", user.strip()))
    return RenderedPrompt(version=version, messages=tuple(messages))


def available() -> list[str]:
    return sorted(p.stem for p in prompts_dir().glob("*.jinja"))
