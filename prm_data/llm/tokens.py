"""A rough token count for when a backend reports none (the simulator, an OpenAI server without usage)."""

from __future__ import annotations


def count_tokens(text: str) -> int:
    """About 1.3 tokens per whitespace-separated word (0 for empty text)."""
    return max(1, round(len(text.split()) * 1.3)) if text else 0
