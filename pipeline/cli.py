"""The `deepflash` command. Each subcommand is a thin wrapper around library code."""

from __future__ import annotations

import shlex
import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepflash-pipeline")
def main() -> None:
    """DeepFlash: turn a flash selfie into a studio-lit portrait (Capece et al. 2019)."""


@main.command("params-overrides")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def params_overrides(path: str) -> None:
    """Print `-S key=value` arguments for `dvc exp run` from a partial params file PATH.

    Example: dvc exp run -n paper $(deepflash params-overrides params-paper.yaml)
    """
    from pipeline.config import ParamsError, override_args

    try:
        click.echo(shlex.join(override_args(path)))
    except ParamsError as error:
        click.echo(str(error), err=True)
        sys.exit(2)


# --- subcommands added by their modules' owners below (keep one section each) ---


if __name__ == "__main__":
    main()
