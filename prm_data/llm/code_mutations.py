"""The bugs the code simulator injects (prm_data/llm/sim_code.py): token mutations of one reference
block, kept only when they make the reference fail at least one of its unit tests.

Three kinds, the common slips of program-repair benchmarks (e.g. the
single-token bugs of QuixBugs and of ManySStuBs4J, arXiv 1905.13334):

- `off_by_one`: `<` and `<=` (`>` and `>=`) exchanged, an integer constant
  plus or minus one, `len(x)` in a `range(...)` plus or minus one;
- `wrong_operator`: `+`/`-`, `+=`/`-=`, `*`/`+`, `%`/`//`, `==`/`!=`, `<`/`>`,
  `<=`/`>=`, `and`/`or` exchanged;
- `wrong_variable`: one use of a variable replaced by another variable in
  scope at that block (the arguments and what earlier blocks and this one assign).
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from functools import lru_cache

from prm_data.sources.code_bank import CodeProblem
from prm_data.sources.trusted_exec import passes_all

KINDS = ("off_by_one", "wrong_operator", "wrong_variable")
_STRICTNESS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_OPERATORS = {"+": "-", "-": "+", "+=": "-=", "-=": "+=", "*": "+", "%": "//", "==": "!=", "!=": "==",
              "<": ">", ">": "<", "<=": ">=", ">=": "<=", "and": "or", "or": "and"}
_RANGE_LEN = re.compile(r"range\(\s*len\((\w+)\)")


def candidate_mutations(block: str, scope: list[str]) -> dict[str, list[str]]:
    """Every single mutation of `block` by kind (syntax not checked; duplicates removed)."""
    lines = block.split("\n")
    out: dict[str, list[str]] = {k: [] for k in KINDS}

    def replace(tok, new: str) -> str:
        (row, col), (_, end) = tok.start, tok.end
        changed = list(lines)
        line = changed[row - 1]
        changed[row - 1] = line[:col] + new + line[end:]
        return "\n".join(changed)

    tokens = list(tokenize.generate_tokens(io.StringIO(block + "\n").readline))
    for k, tok in enumerate(tokens):
        previous = tokens[k - 1].string if k else ""
        if tok.type == tokenize.OP and tok.string in _STRICTNESS:
            out["off_by_one"].append(replace(tok, _STRICTNESS[tok.string]))
        if (tok.type == tokenize.OP or tok.string in ("and", "or")) and tok.string in _OPERATORS:
            out["wrong_operator"].append(replace(tok, _OPERATORS[tok.string]))
        if tok.type == tokenize.NUMBER and tok.string.isdigit():
            value = int(tok.string)
            out["off_by_one"] += [replace(tok, str(value + 1))] + ([replace(tok, str(value - 1))] if value else [])
        if tok.type == tokenize.NAME and tok.string in scope and previous != "." and not keyword.iskeyword(tok.string):
            out["wrong_variable"] += [replace(tok, other) for other in scope if other != tok.string]
    for m in _RANGE_LEN.finditer(block):
        out["off_by_one"] += [block[:m.end()] + delta + block[m.end():] for delta in (" - 1", " + 1")]
    return {k: list(dict.fromkeys(v for v in texts if v != block)) for k, texts in out.items()}


def scope_at(problem: CodeProblem, block_index: int) -> list[str]:
    """The variables a block may use: the arguments and what blocks up to this one assign (not comprehension names)."""
    func = ast.parse(problem.reference_code).body[0]
    names = [a.arg for a in func.args.args]
    for stmt in func.body[: block_index + 1]:
        hidden = {id(n) for c in ast.walk(stmt) if isinstance(c, ast.comprehension) for n in ast.walk(c.target)}
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and id(node) not in hidden:
                names.append(node.id)
    return list(dict.fromkeys(names))


@lru_cache(maxsize=4096)
def verified_mutations(problem: CodeProblem, block_index: int) -> dict[str, tuple[str, ...]]:
    """The mutations of body block `block_index` that compile and, alone in the reference, fail a test."""
    body = list(problem.body)
    out: dict[str, tuple[str, ...]] = {}
    for kind, texts in candidate_mutations(body[block_index], scope_at(problem, block_index)).items():
        kept = []
        for text in texts:
            code = "\n".join([problem.header, *body[:block_index], text, *body[block_index + 1:]]) + "\n"
            try:
                ast.parse(code)
            except SyntaxError:
                continue
            if not passes_all(code, problem.tests):
                kept.append(text)
        out[kind] = tuple(kept)
    return out
