"""`python -m prm_data.train ...`: the `prm-data train` command as a module, for launchers.

    accelerate launch -m prm_data.train --dataset exports/v1 --model Qwen/Qwen2.5-Math-1.5B
    torchrun --nproc_per_node 8 -m prm_data.train --dataset exports/v1 --model ...
"""

import logging

import typer

from prm_data.commands.train import train

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(train)

if __name__ == "__main__":
    app()
