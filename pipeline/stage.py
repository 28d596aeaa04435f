"""The skeleton every DVC stage script shares: its params, its one error line, its exit code.

A stage script is ``def main() -> int: return run_stage("<name>", body)`` plus
``if __name__ == "__main__": sys.exit(main())``; ``body`` does the work from the validated
params and raises :class:`StageError` (or a missing input's FileNotFoundError) to stop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from pipeline.config import Params, load_params


class StageError(Exception):
    """A stage cannot go on; the message says why (printed as ``<stage>: <message>``)."""


def run_stage(
    name: str, body: Callable[[Params], None], errors: tuple[type[Exception], ...] = ()
) -> int:
    """Load params.yaml (a bad key exits 2, naming it) and run ``body`` with it: 0 when it
    returns, 1 after one line ``<name>: <message>`` on stderr when it raises
    :class:`StageError`, FileNotFoundError (a missing input) or one of ``errors``."""
    params = load_params(exit_on_error=True)
    try:
        body(params)
    except (StageError, FileNotFoundError, *errors) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["StageError", "run_stage"]
