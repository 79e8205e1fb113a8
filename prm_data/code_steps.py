"""The `code_block` step policy: steps of a Python solution, with its reasoning.

A solution is reasoning prose, then code (in a ```` ``` ```` fence or bare), then
perhaps more prose. Its steps are:

- each prose paragraph (as under `blank_line`);
- inside the code: the header of a top-level function or class (decorators,
  the `def` line(s) and the docstring) is one step, and each top-level
  statement of its body, with its nested block (`for ...:` with its body,
  `if`/`elif`/`else` together), is one step; every module-level statement
  outside a function (an import, a constant, a helper's call) is one step.

Comment lines belong to the statement after them (trailing ones to the last
statement); blank lines between steps are dropped (Python does not see them)
and blank lines inside a statement are kept. Indentation is kept exactly: a
code step starts with its own indentation. The opening fence line belongs to
the first code step, the closing one to the last, so a prefix that stops
before the last code step leaves the fence open and its continuation is more
code. This is the granularity of step-level code PRMs that split at statements
or logical blocks (e.g. "Process Supervision-Guided Policy Optimization for
Code Generation", arXiv 2410.17621, labels code line blocks).

Statements are found with `tokenize` (logical lines and their indentation), so
truncated or broken code, as a model cut off by `max_tokens` writes, is still
split; whatever cannot be tokenized joins the step before it.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
import unicodedata

FENCE = re.compile(r"^[ \t]*```")
_BLANK_LINE = re.compile(r"^[ \t]*$")
_CODE_START = re.compile(r"^(?:async[ \t]+def|def|class|import|from[ \t]+[\w.]+[ \t]+import)\b|^@\w")
_CLAUSE = {"else", "elif", "except", "finally"}
_HEADER = {"def", "class", "async", "@"}


def code_block_spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_code) character spans of the steps of `text` (newlines already `\\n`).

    A span's text is `text[start:end]`; code spans start at a line start and keep indentation.
    """
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    spans: list[tuple[int, int, bool]] = []
    for kind, lo, hi in _regions(lines):
        if kind == "prose":
            spans.extend(_prose_spans(lines, lo, hi, starts))
        else:
            fenced = kind == "fenced"
            body_lo = lo + 1 if fenced else lo
            body_hi = hi - 1 if fenced and hi - 1 > lo and FENCE.match(lines[hi - 1]) else hi
            groups = _statement_groups(lines[body_lo:body_hi])
            groups = [(a + body_lo, b + body_lo) for a, b in groups]
            if not groups:
                groups = [(lo, hi)]
            else:
                if fenced:
                    groups[0] = (lo, groups[0][1])
                    groups[-1] = (groups[-1][0], hi)
            for a, b in groups:
                while b > a and _BLANK_LINE.match(lines[b - 1]):
                    b -= 1
                if b > a:
                    spans.append((starts[a], starts[b] - 1, True))
    return spans


def split_code_block(text: str) -> list[str]:
    """The steps of `text` under `code_block` (prose steps stripped, code steps right-stripped)."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for start, end, is_code in code_block_spans(text):
        piece = text[start:end]
        piece = piece.rstrip() if is_code else piece.strip()
        if piece:
            out.append(piece)
    return out


def continuation_code_steps(prefix_text: str, continuation: str) -> list[str]:
    """The steps a continuation adds to `prefix_text` (a `join_steps` prefix), split in context.

    The whole text is split and each step is cut at the prefix's end, so the
    continuation's own steps are found where they sit in the code (a body
    statement is a body statement) and a continuation that extends the prefix's
    last statement (an `else:` after its `if`) becomes a step of its own,
    leaving the prefix's steps as they were.
    """
    continuation = (continuation or "").replace("\r\n", "\n").replace("\r", "\n")
    full = prefix_text + continuation
    boundary = len(prefix_text)
    out = []
    for start, end, is_code in code_block_spans(full):
        if end <= boundary:
            continue
        piece = full[max(start, boundary):end]
        if is_code:
            piece = re.sub(r"^(?:[ \t]*\n)+", "", piece.rstrip())
        else:
            piece = piece.strip()
        if piece:
            out.append(piece)
    return out


def join_code_block(steps: list[str], trailing: bool = True) -> str:
    """Steps back into text: code steps on consecutive lines, prose paragraphs apart by a blank line.

    With `trailing` it ends with a newline when the last step is code still open
    (inside an unclosed fence, or bare code), so the continuation is the next
    line of code, and with a blank line otherwise (a fresh paragraph).
    """
    if not steps:
        return ""
    out: list[str] = []
    in_fence = False
    prev_code = False
    for step in steps:
        step = step.rstrip() if step[:1].isspace() else step.strip()
        first = step.split("\n", 1)[0]
        code = in_fence or bool(FENCE.match(first)) or is_code_step(step)
        if out:
            out.append("\n" if code and prev_code else "\n\n")
        out.append(step)
        for line in step.split("\n"):
            if FENCE.match(line):
                in_fence = not in_fence
        prev_code = code and (in_fence or not any(FENCE.match(x) for x in step.split("\n")))
    if trailing:
        out.append("\n" if prev_code else "\n\n")
    return "".join(out)


def is_code_step(step: str) -> bool:
    """Whether a step (outside a fence) is Python code rather than prose.

    Code: it starts with indentation (prose steps are stripped), with a fence,
    with a `def`/`class`/decorator/import line, or it parses as Python with at
    least one statement (a header ending in `:` may miss its body). One-word
    prose ("Done") parses too and counts as code; nothing else of ours does.
    """
    if not step.strip():
        return False
    first = step.split("\n", 1)[0]
    if first[:1].isspace() or FENCE.match(first) or _CODE_START.match(first):
        return True
    return _parses(step)


def _parses(code: str) -> bool:
    code = textwrap.dedent(code)
    for candidate in (code, code.rstrip() + "\n    pass"):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        if tree.body and not all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                 and isinstance(s.value.value, str) for s in tree.body):
            return True
    return False


def _regions(lines: list[str]) -> list[tuple[str, int, int]]:
    """[(kind, first line, end line)] with kind `prose`, `fenced` (fence lines included) or `bare`."""
    if any(FENCE.match(line) for line in lines):
        out, i, n = [], 0, len(lines)
        while i < n:
            if FENCE.match(lines[i]):
                j = i + 1
                while j < n and not FENCE.match(lines[j]):
                    j += 1
                end = min(j + 1, n)
                out.append(("fenced", i, end))
                i = end
            else:
                j = i
                while j < n and not FENCE.match(lines[j]):
                    j += 1
                out.append(("prose", i, j))
                i = j
        return out
    start = _bare_code_start(lines)
    if start is None:
        return [("prose", 0, len(lines))]
    return ([("prose", 0, start)] if start else []) + [("bare", start, len(lines))]


def _bare_code_start(lines: list[str]) -> int | None:
    """The first paragraph start from which the rest is code (parses, or starts like code); None: all prose."""
    starts = [i for i, line in enumerate(lines)
              if line.strip() and (i == 0 or not lines[i - 1].strip())]
    for i in starts:
        rest = "\n".join(lines[i:])
        if not lines[i][:1].isspace() and _parses(rest):
            return i
    for i in starts:
        if _CODE_START.match(lines[i]):
            return i
    return None


def _prose_spans(lines, lo, hi, starts) -> list[tuple[int, int, bool]]:
    out, i = [], lo
    while i < hi:
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < hi and lines[j].strip():
            j += 1
        out.append((starts[i], starts[j] - 1, False))
        i = j
    return out


def _logical_lines(code: str) -> list[tuple[int, int, int, str, bool]]:
    """(first row, last row, indentation depth, first token, only a string) of each logical line, rows 0-based.

    Stops quietly where the code cannot be tokenized (the rest joins the last line's step).
    """
    out: list[tuple[int, int, int, str, bool]] = []
    depth, first, kinds = 0, None, []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.INDENT:
                depth += 1
            elif tok.type == tokenize.DEDENT:
                depth -= 1
            elif tok.type in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            elif tok.type == tokenize.NEWLINE:
                if first is not None:
                    only_string = all(k == tokenize.STRING for k in kinds)
                    out.append((first.start[0] - 1, tok.start[0] - 1, depth, first.string, only_string))
                first, kinds = None, []
            else:
                if first is None:
                    first = tok
                kinds.append(tok.type)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if first is not None:  # an unfinished last line (cut off inside a bracket or string)
        out.append((first.start[0] - 1, code.count("\n"), depth, first.string, False))
    return out


def _statement_groups(lines: list[str]) -> list[tuple[int, int]]:
    """[(first line, end line)] of each code step, relative to `lines`; comments join the next step."""
    if not any(line.strip() for line in lines):
        return []
    logical = _logical_lines("\n".join(lines) + "\n")
    starts: list[int] = []  # the first row of each step's first logical line
    in_header = False  # inside a def/class: its depth-1 statements are steps
    header_open = False  # the header may still take a docstring
    decorator = False
    for row, _end, depth, token, only_string in logical:
        if depth == 0:
            if decorator:  # the def after a decorator belongs to it
                decorator = token == "@"
                header_open = token != "@"
                continue
            starts.append(row)
            in_header = token in _HEADER
            decorator = token == "@"
            header_open = in_header and not decorator
        elif depth == 1 and in_header:
            if header_open and only_string:
                header_open = False
                continue
            header_open = False
            if token not in _CLAUSE:
                starts.append(row)
        else:
            header_open = False
    if not starts:  # comments only
        return [(0, len(lines))]
    begins = [0]
    for row in starts[1:]:
        # the step begins right after the previous statement's last line: comments above it join it
        begins.append(max(last for _first, last, *_ in logical if last < row) + 1)
    groups = []
    for k, b in enumerate(begins):
        e = begins[k + 1] if k + 1 < len(begins) else len(lines)
        while b < e and not lines[b].strip():
            b += 1
        groups.append((b, e))
    return [g for g in groups if g[1] > g[0]]


def normalize_code_step(step: str) -> str:
    """Canonical form of a code step: tokens with single spaces, indentation kept, comments dropped.

    `i < n` and `i<n` are one node; `i < n` and `i <= n`, `x` and `X`, or the
    same statement at another indentation (inside a loop or after it) are not.
    """
    s = unicodedata.normalize("NFKC", step).expandtabs(4)
    lines = [line for line in s.split("\n") if not FENCE.match(line)]
    code = "\n".join(lines)
    out: list[str] = []
    try:
        current: list[str] = []
        indent = ""
        for tok in tokenize.generate_tokens(io.StringIO(code + "\n").readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                if current:
                    out.append(indent + " ".join(current))
                current = []
                continue
            if not current:
                line = lines[tok.start[0] - 1] if tok.start[0] - 1 < len(lines) else ""
                indent = line[: len(line) - len(line.lstrip())]
            current.append(tok.string)
        if current:
            out.append(indent + " ".join(current))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = [line[: len(line) - len(line.lstrip())] + re.sub(r"\s+", " ", line.strip())
               for line in lines if line.strip()]
    return "\n".join(out)
