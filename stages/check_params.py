"""DVC stage `check_params`: validate the whole params.yaml before any stage runs.

Every other stage depends (through the chain) on this stage's marker file, so a typo, an
unknown group, a wrong type or an empty list stops `dvc repro` here, with one line per bad key
and exit code 2, before DVC deletes any stage's outputs. The marker's bytes never change, so a
valid edit of params.yaml re-runs only the stages whose own params changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import load_params
from pipeline.io import write_text

MARKER = Path("data/params.ok")


def main() -> int:
    """Validate params.yaml; write the constant marker only when every group is valid (0),
    else print the bad keys and return 2 (as load_params does for a schema error)."""
    params = load_params(exit_on_error=True)
    # Arch names (model.arch, train.optimizer.<arch>) belong to the model registry, which
    # config.py does not import (it would put torch and every network into each stage).
    from pipeline.config import ParamsError
    from pipeline.models import check_params

    try:
        check_params(params, "params.yaml")
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    write_text(MARKER, "params.yaml is valid\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
