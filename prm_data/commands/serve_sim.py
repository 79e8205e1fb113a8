"""`prm-data serve-sim`: the synthetic policy and judge as an OpenAI-compatible HTTP server.

For trying the `openai` backend, and for load and fault tests; see
prm_data/serve_sim.py for what each switch injects.
"""

from __future__ import annotations

import typer

from prm_data.commands import EXIT_USAGE, console, fail


def register(app: typer.Typer) -> None:
    app.command("serve-sim")(serve_sim)


def serve_sim(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8011, help="Port (0 = any free port)."),
    latency: float = typer.Option(0.0, help="Seconds per successful request."),
    concurrency: int = typer.Option(0, help="Requests served at once (0 = unlimited); capacity = concurrency / latency."),
    reject_over_capacity: bool = typer.Option(False, help="Answer 429 instead of queueing when over the cap."),
    rate_429: float = typer.Option(0.0, "--rate-429", help="Share of requests answered 429 with Retry-After."),
    rate_500: float = typer.Option(0.0, "--rate-500", help="Share of requests answered 500."),
    rate_timeout: float = typer.Option(0.0, help="Share of requests held past --timeout-sleep, then dropped."),
    rate_malformed: float = typer.Option(0.0, help="Share of 200 answers whose body is not JSON."),
    rate_empty: float = typer.Option(0.0, help="Share of 200 answers with no choices."),
    rate_truncated: float = typer.Option(0.0, help="Share of 200 answers cut off halfway."),
    retry_after: float = typer.Option(0.2, help="Retry-After seconds sent with 429s."),
    timeout_sleep: float = typer.Option(5.0, help="Seconds a `timeout` fault holds the connection."),
    seed: int = typer.Option(0, help="Seed of the fault draws."),
    error_rate: float = typer.Option(0.15, help="Sim policy: error probability per step."),
    judge_accuracy: float = typer.Option(0.7, help="Sim judge: probability each verdict is right."),
    api_key_env: str = typer.Option(None, help="Require `Authorization: Bearer $VAR` (name of the env variable)."),
) -> None:
    """Serve the synthetic policy (model `sim-policy`) and judge (`sim-judge`) over HTTP until Ctrl-C."""
    import os
    import signal

    from pydantic import ValidationError

    from prm_data.serve_sim import ServeSimConfig, SimServer

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            fail(f"environment variable {api_key_env} is empty", EXIT_USAGE)
    try:
        cfg = ServeSimConfig(
            latency_s=latency, max_concurrency=concurrency,
            over_capacity="reject" if reject_over_capacity else "queue",
            rate_429=rate_429, rate_500=rate_500, rate_timeout=rate_timeout, rate_malformed=rate_malformed,
            rate_empty=rate_empty, rate_truncated=rate_truncated, retry_after_s=retry_after,
            timeout_sleep_s=timeout_sleep, seed=seed, error_rate=error_rate, judge_accuracy=judge_accuracy,
            api_key=api_key)
    except ValidationError as exc:
        fail(str(exc), EXIT_USAGE)
    server = SimServer(cfg, host=host, port=port)
    # Ctrl-C stops it even when it was started with SIGINT ignored (an `&` job of a non-interactive
    # shell inherits SIG_IGN, and Python then never raises KeyboardInterrupt): a test server must stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # the announcement inside: a Ctrl-C right after it (a test that waits for it) is still a clean stop
        console.print(f"serving sim-policy, sim-judge and sim-coder at [bold]{server.url}[/bold] (Ctrl-C to stop)")
        server.serve_forever()
    except KeyboardInterrupt:
        console.print(f"stopped after {server.requests_total} requests: {dict(server.outcomes())}")
    finally:
        server.stop_listening()
