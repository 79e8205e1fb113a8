"""CLI verbs: one module per verb, each exposing `register(app: typer.Typer) -> None`.

`prm_data/cli.py` imports the modules named in its `COMMAND_MODULES` list.
Helpers shared by the verbs live here: the warehouse chosen with the global
`--warehouse` option, the consoles, and `fail` (message on stderr, exit code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

EXIT_ERROR = 1  # the command ran and failed (bad source, SQL error, nothing usable)
EXIT_USAGE = 2  # the command was refused (bad options, a write sent to `query`)


def warehouse_root(ctx: typer.Context) -> Path | str:
    """The warehouse root chosen by `prm-data --warehouse PATH` (or its default); an object-store URL is a str."""
    obj = ctx.find_root().obj or {}
    if "warehouse" not in obj:
        from prm_data.warehouse import default_root

        return default_root()
    root = obj["warehouse"]
    return root if isinstance(root, str) else Path(root)


def open_warehouse(ctx: typer.Context):
    """The chosen warehouse, created if absent (for the verbs that write: problems, eval of a new set)."""
    from prm_data.warehouses import open_warehouse

    root = warehouse_root(ctx)
    with _store_access(root):
        return open_warehouse(root)


def open_existing_warehouse(ctx: typer.Context):
    """The chosen warehouse; a path that holds none is refused (a read must not create one at a typo)."""
    root = warehouse_root(ctx)
    if isinstance(root, str):
        from prm_data.storage.object_warehouse import warehouse_exists

        with _store_access(root):
            found = warehouse_exists(root)
        if not found:
            fail(f"no warehouse at {root}: give the right --warehouse URL (or PRM_DATA_WAREHOUSE); "
                 "`prm-data run` creates one")
    elif not (root / "tables").is_dir():
        fail(f"no warehouse at {root.resolve()}: give the right --warehouse PATH (or PRM_DATA_WAREHOUSE); "
             "`prm-data run` creates one")
    return open_warehouse(ctx)


@contextmanager
def _store_access(root) -> Iterator[None]:
    """An object store that refuses us (no credentials, a denied key) as one line, not a traceback."""
    from prm_data.preflight import access_reason, is_access_error

    try:
        yield
    except Exception as exc:
        if isinstance(root, str) and is_access_error(exc):
            fail(f"cannot open the warehouse at {root}: {access_reason(exc)}")
        raise


EXIT_CODES_HELP = ("Exit codes: 0 done (also when there was nothing new to do), 1 failed (the message says why), "
                   "2 usage error (bad options, a bad config file, a write sent to `query`).")


def config_error(path, exc: BaseException) -> str:
    """One line for a config that cannot be loaded: a YAML syntax error as `file:line:column: problem`."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{path}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {exc.problem or exc}"
    if isinstance(exc, yaml.YAMLError):
        return f"{path}: YAML error: {' '.join(str(exc).split())}"
    from pydantic import ValidationError

    text = validation_message(exc) if isinstance(exc, ValidationError) else " ".join(str(exc).split())
    return f"{path}: {text if len(text) < 400 else text[:400] + ' ...'}"


def validation_message(exc) -> str:
    """A pydantic ValidationError as `field: problem; ...` (`prm_data.config.field_errors`: no values echoed)."""
    from prm_data.config import field_errors

    return field_errors(exc)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `error: message` on stderr (no markup, never hard-wrapped: paths stay whole) and exit with `code`."""
    err_console.print(Text.assemble(("error: ", "bold red"), str(message)), soft_wrap=True)
    raise typer.Exit(code)
