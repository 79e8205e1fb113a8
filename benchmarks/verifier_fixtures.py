"""Tool verifier and answer checker on hand-written solutions (tests/fixtures/solutions/).

The bank and the synthetic policy write steps of the form `a op b = c`; users feed
human write-ups and model output. This benchmark runs `verify_solution` (default
`ToolVerifyConfig()`) and `grade` on a corpus written by hand for the project in
fourteen styles (GSM8K with `<<a=b>>` annotations, long GSM prose, MATH-style LaTeX,
displayed LaTeX / align, competition notation, case splits and candidate
enumeration, model markdown, Math-Shepherd `Step k:`, long chain-of-thought, prose
write-ups, textbook keys, program-aided output, model solutions with a first error,
prose / yes-no gold answers), every step marked by hand (see
tests/fixtures/solutions/README.md). Measured per split (`dev`: looked at
while fixing the code; `test`: held back) and overall:

- false alarms: contradicted steps of correct solutions, per checked step
  (verified + contradicted) and per step; `exact_false_alarms` counts only those
  with confidence 1.0 (the ones `hybrid` and `propagate_errors` act on);
- flag precision on solutions with a hand-marked first error: of the flags at or
  before the first error, the share that land on it; and the catch rate of first
  errors the tools can prove (`x` steps);
- agreement of each verdict with the hand-marked expected one;
- answer checking: `grade(full text, gold)` against the expected status, and how
  many correct solutions were graded `incorrect`.

Assumptions: the corpus is small (281 solutions, 803 steps) and written by one author,
so the figures carry that author's habits; a user's own data can differ.

Run: `python benchmarks/verifier_fixtures.py [--baseline DIR]`: prints a table and
writes benchmarks/results/verifier_fixtures.json. With `--baseline DIR` (a copy of
an older `prm_data`, e.g. `git archive <rev> prm_data | tar -x -C DIR`) the same
measurement runs again in a subprocess importing that copy and is reported beside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "solutions"
RESULTS = Path(__file__).resolve().parent / "results"
CODES = {"v": "verified", "a": "not_checkable", "x": "contradicted", "w": None, ".": None}


@dataclass(frozen=True)
class FixtureSolution:
    """One hand-written solution: its steps, each step's hand mark, gold answer and expected grade."""

    id: str
    style: str
    split: str
    question: str
    gold: str
    grade: str
    steps: tuple[str, ...]
    marks: tuple[str, ...]  # one code of CODES per step

    @property
    def first_error(self) -> int:
        """Index of the hand-marked first wrong step (`x` or `w`), -1 when the solution is correct."""
        return next((i for i, m in enumerate(self.marks) if m in "xw"), -1)


class FixtureError(ValueError):
    """A fixture file that does not follow the format of tests/fixtures/solutions/README.md."""


def _parse_file(path: Path) -> list[FixtureSolution]:
    out: list[FixtureSolution] = []
    blocks = [b for b in path.read_text().split("\n=== ") if b.strip() and not b.lstrip().startswith("#")]
    for index, block in enumerate(blocks):
        block = block.removeprefix("=== ")
        head, sep, body = block.partition("\n---\n")
        if not sep:
            raise FixtureError(f"{path.name}: solution {block.splitlines()[0]!r} has no '---' line")
        lines = head.splitlines()
        sid, fields = lines[0].strip(), {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        steps: list[str] = []
        marks: list[str] = []
        for line in body.splitlines():
            if line.startswith("#") or not line.strip() and not steps:
                continue
            if line.startswith("|"):
                if not steps:
                    raise FixtureError(f"{path.name}:{sid}: continuation line before any step")
                steps[-1] += "\n" + line[2:]
            elif line.strip():
                code, _, text = line.partition(" ")
                if code not in CODES:
                    raise FixtureError(f"{path.name}:{sid}: unknown step code {code!r}")
                marks.append(code)
                steps.append(text)
        missing = {"style", "gold", "grade", "question"} - set(fields)
        if missing:
            raise FixtureError(f"{path.name}:{sid}: missing {', '.join(sorted(missing))}")
        out.append(FixtureSolution(sid, fields["style"], "test" if index % 3 == 2 else "dev",
                                   fields["question"], fields["gold"], fields["grade"],
                                   tuple(s.strip() for s in steps), tuple(marks)))
    return out


def load_fixtures(directory: Path = FIXTURES) -> list[FixtureSolution]:
    """Every solution of every `*.txt` fixture file, in file order."""
    out: list[FixtureSolution] = []
    for path in sorted(directory.glob("*.txt")):
        out.extend(_parse_file(path))
    return out


def _measure(solutions: list[FixtureSolution]) -> dict:
    from prm_data.answers import grade
    from prm_data.labelers.inputs import Solution
    from prm_data.labelers.tool_verify import verdict_of, verify_solution
    from prm_data.steps import join_steps

    c = Counter({k: 0 for k in ("steps", "marked", "agree", "correct_steps", "checked", "verified", "false_alarms",
                                "exact_false_alarms", "flags_upto_first_error", "flags_on_first_error",
                                "provable_first_errors", "caught", "correct_solutions", "solutions_with_false_alarm",
                                "wrong_solutions", "correct_graded_incorrect", "ungradeable_graded_incorrect")})
    grades = Counter()
    styles = Counter()
    for s in solutions:
        styles[s.style] += 1
        labels = verify_solution(Solution(s.id, s.id, s.question, s.steps))
        verdicts = [verdict_of(l) for l in labels]
        fe = s.first_error
        for i, (mark, v, label) in enumerate(zip(s.marks, verdicts, labels)):
            c["steps"] += 1
            expected = CODES[mark]
            if expected is not None:
                c["marked"] += 1
                c["agree"] += v == expected
            if fe == -1:
                c["correct_steps"] += 1
                c["checked"] += v in ("verified", "contradicted")
                c["verified"] += v == "verified"
                if v == "contradicted":
                    c["false_alarms"] += 1
                    c["exact_false_alarms"] += label.confidence >= 1.0
            elif i <= fe:
                if v == "contradicted":
                    c["flags_upto_first_error"] += 1
                    c["flags_on_first_error"] += i == fe
                if i == fe and mark == "x":
                    c["provable_first_errors"] += 1
                    c["caught"] += v == "contradicted"
        if fe == -1:
            c["correct_solutions"] += 1
            c["solutions_with_false_alarm"] += "contradicted" in verdicts
        else:
            c["wrong_solutions"] += 1
        status, _ = grade(join_steps(list(s.steps), trailing=False), s.gold)
        grades[f"expected {s.grade}: got {status}"] += 1
        if s.grade == "correct" and status == "incorrect":
            c["correct_graded_incorrect"] += 1
        if s.grade == "ungradeable" and status == "incorrect":
            c["ungradeable_graded_incorrect"] += 1

    def share(a: str, b: str):
        return round(c[a] / c[b], 4) if c[b] else None

    return {"solutions": len(solutions), "styles": dict(sorted(styles.items())), **dict(sorted(c.items())),
            "false_alarm_rate_checked": share("false_alarms", "checked"),
            "false_alarm_rate_steps": share("false_alarms", "correct_steps"),
            "flag_precision": share("flags_on_first_error", "flags_upto_first_error"),
            "catch_rate": share("caught", "provable_first_errors"),
            "verdict_agreement": share("agree", "marked"),
            "grades": dict(sorted(grades.items())),
            "grade_agreement": round(sum(v for k, v in grades.items()
                                         if k.split(": got ")[0][9:] == k.split(": got ")[1]) / len(solutions), 4)}


def measure() -> dict:
    """The figures of the module docstring for the code importable as `prm_data` now, per split."""
    fixtures = load_fixtures()
    return {split: _measure([s for s in fixtures if split in ("all", s.split)]) for split in ("dev", "test", "all")}


def _baseline(directory: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(directory).resolve()), str(ROOT / "benchmarks")]))
    code = "import json, verifier_fixtures as v; print(json.dumps(v.measure()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=directory)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    rows = [("false alarms / checked steps (correct solutions)", "false_alarm_rate_checked", "%"),
            ("false alarms (count)", "false_alarms", ""), ("  of them with confidence 1.0", "exact_false_alarms", ""),
            ("checked steps (verified + contradicted)", "checked", ""), ("steps of correct solutions", "correct_steps", ""),
            ("correct solutions with a false alarm", "solutions_with_false_alarm", ""),
            ("flag precision (flags <= first error on it)", "flag_precision", "%"),
            ("flags at or before the first error", "flags_upto_first_error", ""),
            ("provable first errors caught", "catch_rate", "%"),
            ("verdict = hand-marked verdict", "verdict_agreement", "%"),
            ("grade = expected status", "grade_agreement", "%"),
            ("correct solutions graded incorrect", "correct_graded_incorrect", ""),
            ("prose/yes-no golds graded incorrect", "ungradeable_graded_incorrect", "")]
    columns = [(name, split) for name in results if name != "corpus" for split in ("dev", "test")]
    lines = [f"{'':48s}" + "".join(f"{name + ' ' + split:>18s}" for name, split in columns)]
    for title, key, kind in rows:
        cells = []
        for name, split in columns:
            v = results[name][split].get(key, 0)
            cells.append("-" if v is None else (f"{v:.1%}" if kind == "%" else str(v)))
        lines.append(f"{title:48s}" + "".join(f"{c:>18s}" for c in cells))
    corpus = results["corpus"]
    lines.append(f"corpus: {corpus['solutions']} solutions, {corpus['steps']} steps, styles {corpus['styles']}")
    return "\n".join(lines)


def run(baseline: str | None = None) -> dict:
    after = measure()
    results = {"corpus": {k: after["all"][k] for k in ("solutions", "steps", "styles")}, "after": after}
    if baseline:
        results = {"corpus": results["corpus"], "before": _baseline(baseline), "after": after}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="directory holding an older prm_data package to measure beside")
    args = parser.parse_args()
    results = run(args.baseline)
    print(table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "verifier_fixtures.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
