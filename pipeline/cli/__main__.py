"""`python -m pipeline.cli`: the same as the `deepflash` command."""

from pipeline.cli.main import main

main()
