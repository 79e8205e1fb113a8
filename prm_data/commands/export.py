"""`prm-data export --out DIR [--push-to-hub REPO [--private]]`: final labels as HF datasets.

Writes the stepwise (TRL), pairs (Step-DPO) and processbench formats, split by
problem, with a dataset card; see prm_data/export.py and docs/export.md. The Hub
token comes from HF_TOKEN or `hf auth login` and is never printed.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, fail, open_existing_warehouse


def register(app: typer.Typer) -> None:
    app.command("export")(export)


RL_REWARDS_OPTIONS = ("reward_transform", "reward_gamma", "reward_gate", "clip_threshold", "tokenizer")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was set on the command line (or by its environment variable), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def export(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (replaced whole)."),
    policy: str = typer.Option(None, help="final_labels.policy to export (default: the newest run's; "
                               "an absent one is refused with the list of those present)."),
    run_id: str = typer.Option(None, "--run-id", help="Only final labels of this run (default: every run)."),
    formats: list[str] = typer.Option(None, "--format", "-f",
                                      help="stepwise, pairs, processbench, rl_rewards, openrlhf, verifier_sft "
                                           "(repeat; default: the first three)."),
    test_fraction: float = typer.Option(0.1, help="Share of problems in the test split."),
    split_salt: str = typer.Option("prm-data-split-v1", help="Salt of the problem-id hash that splits."),
    pair_margin: float = typer.Option(0.5, help="Minimum MC-value gap of a step preference pair."),
    pair_min_samples: int = typer.Option(4, help="Minimum MC samples behind each step of a pair."),
    max_pairs_per_node: int = typer.Option(4, help="At most this many pairs per tree node."),
    license: str = typer.Option(None, "--license", help="Hub license id for the dataset card (default `unknown`; "
                                "`prm-data run` takes export.options.license from the run config)."),
    reward_transform: str = typer.Option("clip_delta", help="rl_rewards: raw, clip, delta, clip_delta, potential, "
                                         "gated, progress."),
    reward_gamma: float = typer.Option(1.0, help="rl_rewards: discount of potential shaping."),
    reward_gate: float = typer.Option(1.0, help="rl_rewards: outcome reward a gated rollout must reach."),
    clip_threshold: float = typer.Option(0.5, help="rl_rewards: value subtracted before clipping at 0."),
    tokenizer: str = typer.Option(None, help="rl_rewards: local tokenizer folder or .gguf for token offsets."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", metavar="REPO",
                                    help="Also push to this Hub dataset repo (token: HF_TOKEN or hf login)."),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo private."),
    max_shard_size: str = typer.Option(None, "--max-shard-size", help="Hub Parquet shard size, e.g. 500MB."),
) -> None:
    """Export final labels: TRL stepwise, step preference pairs and a ProcessBench-style set.

    Example: prm-data export --out exports/v1 --policy consensus --push-to-hub me/prm-v1 --private
    """
    from pydantic import ValidationError

    from prm_data.export import EmptyExport, ExportConfig, HubPushError
    from prm_data.export_run import run_export
    from prm_data.exports.step_offsets import TokenizerUnavailable

    if private and not push_to_hub:
        fail("--private only applies with --push-to-hub REPO", EXIT_USAGE)
    chosen = formats or ExportConfig().formats
    given = [name for name in RL_REWARDS_OPTIONS if _given(ctx, name)]
    if given and "rl_rewards" not in chosen:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        fail(f"{flags} {'applies' if len(given) == 1 else 'apply'} only to the rl_rewards format: add -f rl_rewards "
             "(nothing was exported)", EXIT_USAGE)
    if push_to_hub:
        from huggingface_hub import get_token

        if not get_token():  # say so before anything is built, written or uploaded
            fail("--push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login` "
                 "(nothing was exported or uploaded)", EXIT_ERROR)
    try:
        config = ExportConfig(
            policy=policy, run_id=run_id, formats=tuple(chosen),
            test_fraction=test_fraction, split_salt=split_salt, pair_margin=pair_margin,
            pair_min_samples=pair_min_samples, max_pairs_per_node=max_pairs_per_node,
            **({"license": license} if license else {}),
            trainers={"tokenizer": tokenizer, "rewards": {"transform": reward_transform, "gamma": reward_gamma,
                                                          "gate": reward_gate, "clip_threshold": clip_threshold}})
    except ValidationError as exc:
        fail(f"invalid export options: {exc}", EXIT_USAGE)
    try:
        result = run_export(open_existing_warehouse(ctx), out, config, push_to_hub=push_to_hub, private=private,
                            max_shard_size=max_shard_size)
    except (HubPushError, EmptyExport, FileExistsError, TokenizerUnavailable) as exc:  # a HubPushError is already scrubbed of the token
        fail(str(exc), EXIT_ERROR)
    console.print(f"policy {result.policy}", markup=False, highlight=False)
    for fmt, by_split in result.counts.items():
        console.print(f"{fmt}: train {by_split['train']}, test {by_split['test']}")
    console.print(f"wrote {result.path}")
    if result.repo_id:
        from huggingface_hub import constants

        console.print(f"pushed to the Hub dataset {result.repo_id}: {constants.ENDPOINT}/datasets/{result.repo_id}",
                      markup=False, highlight=False, soft_wrap=True)
