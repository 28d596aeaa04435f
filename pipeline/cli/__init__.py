"""The `deepflash` command line: main.py holds the commands, grid.py the `deepflash grid` group.

Only ``main`` is the package's face (the console script ``deepflash = pipeline.cli:main``).
"""

from pipeline.cli.main import main

__all__ = ["main"]
