"""DVC stage `demo`: generate the synthetic flash/studio demo dataset into data/raw/demo."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import load_params
from pipeline.datasets.demo import generate_demo
from pipeline.io import write_json

OUT_DIR = Path("data/raw/demo")
METRICS = Path("metrics/demo.json")


def main() -> int:
    """Load params.yaml, render the demo pairs, write metrics/demo.json."""
    demo = load_params(exit_on_error=True).demo
    try:
        summary = generate_demo(OUT_DIR, demo, overwrite=True, progress=True)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    write_json(METRICS, summary.metrics())
    for name in summary.faces_not_found:
        print(f"demo: no face found in portrait {name}; framed on the image centre")
    for file, reason in summary.skipped_portraits:
        print(f"demo: skipped portrait {file}: {reason}")
    print(
        f"demo: {len(summary.pairs)} pairs of {len(summary.subjects)} subjects "
        f"from {len(summary.sources)} portraits -> {OUT_DIR}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
