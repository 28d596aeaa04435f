"""DVC stage `demo`: generate the synthetic flash/studio demo dataset into data/raw/demo."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.datasets.demo import generate_demo
from pipeline.io import write_json
from pipeline.stage import run_stage

OUT_DIR = Path("data/raw/demo")
METRICS = Path("metrics/demo.json")


def demo(params: Params) -> None:
    """Render the demo pairs, write metrics/demo.json."""
    summary = generate_demo(OUT_DIR, params.demo, overwrite=True, progress=True)
    write_json(METRICS, summary.metrics())
    for name in summary.faces_not_found:
        print(f"demo: no face found in portrait {name}; framed on the image centre")
    for file, reason in summary.skipped_portraits:
        print(f"demo: skipped portrait {file}: {reason}")
    print(
        f"demo: {len(summary.pairs)} pairs of {len(summary.subjects)} subjects "
        f"from {len(summary.sources)} portraits -> {OUT_DIR}"
    )


def main() -> int:
    """Run the stage from the repository root."""
    # A folder in the way (not a previous demo), an unusable portraits_dir.
    return run_stage("demo", demo, (FileExistsError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
