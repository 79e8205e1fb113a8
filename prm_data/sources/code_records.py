"""Code problems in the two formats users have: HumanEval-style and MBPP-style records.

- HumanEval-style (Chen et al. 2021, arXiv 2107.03374): `prompt` (the
  signature and docstring), `canonical_solution` (the body that completes it),
  `test` (code defining `check(candidate)`), `entry_point`; `task_id` optional.
- MBPP-style (Austin et al. 2021, arXiv 2108.07732): `text` (the task),
  `code` (the reference), `test_list` (assert statements, a list or a JSON
  list in one text cell), `test_setup_code` optional; `task_id` optional.

Both become problem rows of the code convention (issue 18): `question` the task
with the function's signature, `answer` the reference code, `reference_solution`
the reference as `code_block` steps, `difficulty` the number of top-level
statements of the function's body, `metadata["outcome"]` the `OutcomeSpec` of
the `code` verifier. HumanEval's `check` is split into one test per `assert`
(with `candidate` renamed to the entry point) when its body is only asserts;
otherwise it is kept whole as one test that defines `check` and calls it. Its
module-level statements (imports, constants) become `setup`.

A record that cannot become such a problem raises `RowError` with the reason:
a missing key, a test or solution that does not parse, an entry point the
reference does not define. `detect_format` tells the formats apart by their keys.
"""

from __future__ import annotations

import ast
import json

from prm_data.sources.record_fields import text_field
from prm_data.verifiers.protocol import OutcomeSpec

HUMANEVAL_KEYS = ("prompt", "canonical_solution", "test", "entry_point")
MBPP_KEYS = ("text", "code", "test_list")
FORMATS = ("humaneval", "mbpp")


class CodeRecordError(ValueError):
    """Why a code record cannot become a problem (validate.py stores it as the failure's reason)."""


def detect_format(data: dict) -> str | None:
    """`humaneval`, `mbpp` or None (not a code record) from a record's keys."""
    keys = set(data)
    if {"prompt", "test", "entry_point"} <= keys:
        return "humaneval"
    if {"text", "test_list"} <= keys:
        return "mbpp"
    return None


def code_problem_fields(data: dict, fmt: str, max_chars: int) -> dict:
    """question, answer, reference_solution, difficulty and metadata (a dict) of a code record."""
    if fmt == "humaneval":
        return _humaneval(data, max_chars)
    if fmt == "mbpp":
        return _mbpp(data, max_chars)
    raise CodeRecordError(f"unknown code format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _humaneval(data: dict, max_chars: int) -> dict:
    prompt, body, test, entry = (_field(data, k, "humaneval", max_chars) for k in HUMANEVAL_KEYS)
    entry = entry.strip()
    code = prompt + body
    function = _defined(code, entry, "prompt + canonical_solution")
    tests, setup = split_check(test, entry)
    question = (f"Complete the Python function `{entry}` below so that it does what its docstring says.\n\n"
                f"```python\n{prompt.rstrip()}\n```")
    return _fields(question, code, function, OutcomeSpec("code", tests=tests, entry_point=entry, setup=setup),
                   {"format": "humaneval", "prompt": prompt})


def _mbpp(data: dict, max_chars: int) -> dict:
    text = _field(data, "text", "mbpp", max_chars)
    code = _field(data, "code", "mbpp", max_chars)
    tests = _test_list(data.get("test_list"))
    setup = data.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise CodeRecordError(f"wrong type for mbpp key 'test_setup_code': expected text, got {type(setup).__name__}")
    setup = _newlines(setup)
    for k, t in enumerate((setup, *tests)):
        _parses(t, "test_setup_code" if k == 0 else f"test {k} of test_list")
    entry = _mbpp_entry_point(code, tests)
    function = _defined(code, entry, "code")
    header = ast.get_source_segment(code, function).split("\n", 1)[0].strip() if function else f"def {entry}(...):"
    question = f"{text.strip()}\n\nWrite it as the Python function `{header.rstrip(':')}`. For example:\n{tests[0]}"
    spec = OutcomeSpec("code", tests=tests, entry_point=entry, setup=setup)
    return _fields(question, code, function, spec, {"format": "mbpp"})


def _fields(question: str, code: str, function: ast.FunctionDef, spec: OutcomeSpec, extra: dict) -> dict:
    from prm_data.steps import join_steps, split_steps

    fenced = f"```python\n{code.strip()}\n```"
    return {"question": question, "answer": code,
            "reference_solution": join_steps(split_steps(fenced, "code_block"), "code_block", trailing=False),
            "difficulty": len([n for n in function.body if not _is_docstring(n)]), "metadata": {"outcome": spec.to_dict(), **extra}}


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _field(data: dict, key: str, fmt: str, max_chars: int) -> str:
    return _newlines(text_field(data, key, f"{fmt} key", max_chars, error=CodeRecordError))


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parses(code: str, what: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise CodeRecordError(f"{what} does not parse: {exc.msg} (line {exc.lineno})") from None


def _defined(code: str, entry: str, what: str) -> ast.FunctionDef:
    tree = _parses(code, what)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry:
            return node
    raise CodeRecordError(f"entry point {entry!r} is not defined by {what}")


def split_check(test: str, entry: str) -> tuple[tuple[str, ...], str]:
    """(tests, setup) of a HumanEval `check(candidate)` test: one test per assert when possible."""
    tree = _parses(test, "test")
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise CodeRecordError("test defines no check(candidate) function")
    check = checks[-1]
    setup = "\n".join(ast.get_source_segment(test, n) for n in tree.body if n is not check)
    params = [a.arg for a in check.args.args]
    if len(params) != 1:
        raise CodeRecordError(f"check takes {len(params)} arguments; expected one (the candidate)")
    body = [n for n in check.body if not _is_docstring(n)]
    if body and all(isinstance(n, ast.Assert) for n in body):
        renamed = [_Rename(params[0], entry).visit(n) for n in body]
        return tuple(ast.unparse(n) for n in renamed), setup
    whole = ast.get_source_segment(test, check)
    return (f"{whole}\n\ncheck({entry})",), setup


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def _test_list(value) -> tuple[str, ...]:
    if value is None:
        raise CodeRecordError("missing mbpp key 'test_list'")
    if isinstance(value, str):  # a CSV cell: a JSON list
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise CodeRecordError("mbpp key 'test_list' is text but not a JSON list of asserts") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(t, str) for t in value):
        raise CodeRecordError("mbpp key 'test_list' must be a non-empty list of assert statements (text)")
    return tuple(_newlines(t).strip() for t in value)


def _mbpp_entry_point(code: str, tests: tuple[str, ...]) -> str:
    """The function the tests call that the code defines (MBPP names none)."""
    defined = [n.name for n in _parses(code, "code").body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    called = [n.func.id for t in tests for n in ast.walk(ast.parse(t))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for name in called:
        if name in defined:
            return name
    raise CodeRecordError(f"the tests call none of the functions the code defines ({', '.join(defined) or 'none'}):"
                          " no entry point")
