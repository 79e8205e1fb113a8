"""`prm-data judge-check`: run the judge-hacking probes against one judge by hand.

    prm-data judge-check --backend sim --model sim-judge [--hackable]
    prm-data judge-check --backend openai --model Qwen/Qwen2.5-7B-Instruct --base-url http://127.0.0.1:8000/v1
    prm-data judge-check --config configs/judge_check.yaml

Prints, per probe (prm_data/labelers/judge_probes.py), how many sampled
verdicts accepted a solution with no reasoning in it; exits 0 when the judge
may be trusted and 1 when it is refused. A `--config` YAML holds the same
fields (`backend`, `model`, `base_urls`, `api_key_env`, `hackable`,
`judge_accuracy`) plus `probes:` with any JudgeProbeConfig field; options given
on the command line win over the file.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, fail


def register(app: typer.Typer) -> None:
    app.command("judge-check")(judge_check)


def judge_check(
    backend: str = typer.Option(None, help="sim or openai (default sim)."),
    model: str = typer.Option(None, help="Judge model name (default sim-judge)."),
    base_url: list[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (repeat for several)."),
    api_key_env: str = typer.Option(None, help="Environment variable holding the API key (openai backend)."),
    hackable: bool = typer.Option(None, "--hackable/--honest", help="sim only: make the judge accept degenerate solutions."),
    samples: int = typer.Option(None, help="Samples per probe and problem."),
    max_accept_share: float = typer.Option(None, help="Largest accepted share a trusted judge may have."),
    config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                help="YAML file with the judge and probe settings."),
) -> None:
    """Probe a judge with master-key solutions ("Thought process:", ":", ...) and refuse it if fooled."""
    import yaml
    from pydantic import ValidationError
    from rich.markup import escape

    from prm_data.labelers.judge_probes import JudgeProbeConfig, JudgeRejected, check_judge
    from prm_data.llm.client import LLMClient

    spec: dict = {}
    if config is not None:
        try:
            spec = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as exc:
            fail(f"{config}: not valid YAML: {exc}", EXIT_USAGE)
        if not isinstance(spec, dict):
            fail(f"{config}: expected a mapping at the top level", EXIT_USAGE)
    given = {"backend": backend, "model": model, "base_urls": base_url or None, "api_key_env": api_key_env,
             "hackable": hackable}
    spec.update({k: v for k, v in given.items() if v is not None})
    probe_fields = dict(spec.pop("probes", None) or {})
    if samples is not None:
        probe_fields["samples"] = samples
    if max_accept_share is not None:
        probe_fields["max_accept_share"] = max_accept_share
    try:
        probe_config = JudgeProbeConfig(**probe_fields)
    except ValidationError as exc:
        fail(f"invalid probe settings: {exc}", EXIT_USAGE)
    client = LLMClient(_backend(spec))
    try:
        report = check_judge(client, probe_config, judge=spec.get("name", "judge"))
        verdict, code = "[green]trusted[/green]", 0
    except JudgeRejected as exc:
        report, verdict, code = exc.report, f"[red]refused[/red]: {escape(str(exc))}", EXIT_ERROR
    _print(report)
    console.print(f"judge {report.model}: {verdict}")
    raise typer.Exit(code)


def _backend(spec: dict):
    kind = spec.get("backend", "sim")
    model = spec.get("model")
    if kind == "sim":
        from prm_data.llm.sim import SimBackend

        return SimBackend(model=model or "sim-judge", fooled_rate=1.0 if spec.get("hackable") else 0.0,
                          judge_accuracy=float(spec.get("judge_accuracy", 0.7)))
    if kind == "openai":
        from prm_data.llm.openai_backend import OpenAIBackend

        if not model or not spec.get("base_urls"):
            fail("the openai backend needs --model and at least one --base-url", EXIT_USAGE)
        if spec.get("hackable") is not None:
            fail("--hackable/--honest only applies to the sim backend", EXIT_USAGE)
        return OpenAIBackend(model=model, base_urls=list(spec["base_urls"]),
                             api_key_env=spec.get("api_key_env") or "OPENAI_API_KEY")
    fail(f"unknown backend {kind!r}; use sim or openai", EXIT_USAGE)


def _print(report) -> None:
    from rich.table import Table

    table = Table(title=f"judge-hacking probes: {report.judge} ({report.model})")
    for col in ("probe", "samples", "accepted", "abstained"):
        table.add_column(col, justify="left" if col == "probe" else "right")
    for name, c in report.by_probe.items():
        table.add_row(name, str(c["samples"]), str(c["accepted"]), str(c["abstained"]))
    table.add_row("total", str(report.samples), f"{report.accepted} ({report.accept_share:.0%})",
                  f"{report.abstained} ({report.abstain_share:.0%})")
    console.print(table)
    console.print(f"tokens: {report.prompt_tokens} prompt, {report.completion_tokens} completion")
