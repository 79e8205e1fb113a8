"""Split solutions into steps, with named policies.

- `blank_line`: steps are paragraphs separated by a blank line (`\\n\\n`), as in
  Qwen2.5-Math-PRM and ProcessBench;
- `step_k`: steps start with a `Step k:` marker, as in Math-Shepherd; text
  before the first marker is kept as its own step only if not blank;
- `line`: one step per non-empty line;
- `code_block`: for code solutions: reasoning paragraphs, then the function
  header and each top-level statement of its body (prm_data/code_steps.py).

`join_steps` is the inverse used to build the assistant prefix from which
continuations are sampled: the steps joined by the policy's separator, with a
trailing separator so the model starts a fresh step (under `code_block`: a
newline inside open code, so the model writes the next line of code).
`continuation_steps` splits what a model wrote after such a prefix.
"""

from __future__ import annotations

import re
import unicodedata

from prm_data.code_steps import continuation_code_steps, is_code_step, join_code_block, normalize_code_step, \
    split_code_block

POLICIES = ("blank_line", "step_k", "line", "code_block")
_BLANK = re.compile(r"\n[ \t]*\n")
_STEP_MARK = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)]")


def split_steps(text: str, policy: str = "blank_line") -> list[str]:
    """The steps of `text` under `policy`, stripped, empty ones dropped."""
    if policy not in POLICIES:
        raise ValueError(f"unknown step policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "code_block":
        return split_code_block(text)
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
    """The text between two steps (`code_block`: between two code steps; prose ones take a blank line)."""
    return "\n" if policy in ("line", "code_block") else "\n\n"


def join_steps(steps: list[str], policy: str = "blank_line", trailing: bool = True) -> str:
    """Steps back into text; with `trailing`, ends with the separator (a prefix to continue)."""
    if not steps:
        return ""
    if policy == "code_block":
        return join_code_block(steps, trailing)
    sep = separator(policy)
    return sep.join(s.strip() for s in steps) + (sep if trailing else "")


def continuation_steps(prefix: list[str], continuation: str, policy: str = "blank_line") -> list[str]:
    """The steps of `continuation`, written after the prefix `join_steps(prefix, policy)`.

    Under `code_block` they are split in the context of the prefix (a body
    statement is one even though the continuation alone is indented code);
    the other policies split the continuation alone.
    """
    if policy == "code_block":
        return continuation_code_steps(join_steps(prefix, policy), continuation)
    return split_steps(continuation, policy)


def stored_step(step: str) -> str:
    """A step as stored (tree nodes): stripped, except that an indented code step keeps its indentation."""
    return step.rstrip() if step[:1] in (" ", "\t") else step.strip()


def normalize_step(step: str) -> str:
    """Canonical form used to decide that two steps are the same tree node.

    Unicode NFKC, case-folded, `Step k:` marker removed, whitespace collapsed,
    trailing punctuation dropped. Numbers and operators are kept exactly:
    "2+3=5" and "2+3=6" must stay different steps. A code step (it starts with
    indentation, a fence or a `def`/`class`/import line, or spans lines that
    parse as Python) keeps its case and indentation and is compared token by
    token (prm_data/code_steps.py `normalize_code_step`): `i < n` and `i <= n`
    differ; a one-line unindented statement (`x = 1`) is compared as prose.
    """
    if _is_multiline_or_marked_code(step):
        return normalize_code_step(step)
    s = unicodedata.normalize("NFKC", step)
    s = _STEP_MARK.sub("", s, count=1)
    s = re.sub(r"\s+", " ", s).strip().casefold()
    s = re.sub(r"\s*([=+\-*/×÷()])\s*", r"\1", s)
    return s.rstrip(" .;:,")


def _is_multiline_or_marked_code(step: str) -> bool:
    # one-line unindented text keeps the prose form, so math steps such as "x = 5" keep their node ids
    # and a multi-line step is parsed only when a later line is indented (cheap for multi-line prose)
    first, _, rest = step.partition("\n")
    if not step.strip():
        return False
    if first[:1].isspace() or first.lstrip().startswith(("```", "def ", "class ", "async def ", "@")):
        return True
    return bool(re.search(r"\n[ \t]+\S", "\n" + rest)) and is_code_step(step)
