"""Split solutions into steps, with named policies.

- `blank_line`: steps are paragraphs separated by a blank line (`\\n\\n`), as in
  Qwen2.5-Math-PRM and ProcessBench;
- `step_k`: steps start with a `Step k:` marker, as in Math-Shepherd; text
  before the first marker is kept as its own step only if not blank;
- `line`: one step per non-empty line.

`join_steps` is the inverse used to build the assistant prefix from which
continuations are sampled: the steps joined by the policy's separator, with a
trailing separator so the model starts a fresh step.
"""

from __future__ import annotations

import re
import unicodedata

POLICIES = ("blank_line", "step_k", "line")
_BLANK = re.compile(r"\n[ \t]*\n")
_STEP_MARK = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)]")


def split_steps(text: str, policy: str = "blank_line") -> list[str]:
    """The steps of `text` under `policy`, stripped, empty ones dropped."""
    if policy not in POLICIES:
        raise ValueError(f"unknown step policy {policy!r}; choose one of {', '.join(POLICIES)}")
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    if policy == "blank_line":
        parts = _BLANK.split(text)
    elif policy == "line":
        parts = text.split("\n")
    else:
        starts = [m.start() for m in _STEP_MARK.finditer(text)]
        if not starts:
            parts = _BLANK.split(text)
        else:
            parts = [text[: starts[0]]] + [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return [p.strip() for p in parts if p.strip()]


def separator(policy: str = "blank_line") -> str:
    return "\n" if policy == "line" else "\n\n"


def join_steps(steps: list[str], policy: str = "blank_line", trailing: bool = True) -> str:
    """Steps back into text; with `trailing`, ends with the separator (a prefix to continue)."""
    if not steps:
        return ""
    sep = separator(policy)
    return sep.join(s.strip() for s in steps) + (sep if trailing else "")


def normalize_step(step: str) -> str:
    """Canonical form used to decide that two steps are the same tree node.

    Unicode NFKC, case-folded, `Step k:` marker removed, whitespace collapsed,
    trailing punctuation dropped. Numbers and operators are kept exactly:
    "2+3=5" and "2+3=6" must stay different steps.
    """
    s = unicodedata.normalize("NFKC", step)
    s = _STEP_MARK.sub("", s, count=1)
    s = re.sub(r"\s+", " ", s).strip().casefold()
    s = re.sub(r"\s*([=+\-*/×÷()])\s*", r"\1", s)
    return s.rstrip(" .;:,")
