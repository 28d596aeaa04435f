"""DVC stage `demo`: generate the synthetic flash/studio demo dataset into data/raw/demo."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.datasets.demo import generate_demo
from pipeline.io import write_json

OUT_DIR = Path("data/raw/demo")
METRICS = Path("metrics/demo.json")


def main() -> None:
    """Load params.yaml, render the demo pairs, write metrics/demo.json."""
    p = load_params(exit_on_error=True).demo
    summary = generate_demo(
        OUT_DIR,
        n_subjects=p.n_subjects,
        poses=p.poses,
        width=p.width,
        height=p.height,
        seed=p.seed,
        portraits_dir=p.portraits_dir,
        max_rotation_deg=p.max_rotation_deg,
        max_scale=p.max_scale,
        max_shift_frac=p.max_shift_frac,
        max_shear=p.max_shear,
        noise_sigma=p.noise_sigma,
        overwrite=True,
        progress=True,
    )
    write_json(METRICS, summary.metrics())
    for name in summary.faces_not_found:
        print(f"demo: no face found in portrait {name}; framed on the image centre")
    for file, reason in summary.skipped_portraits:
        print(f"demo: skipped portrait {file}: {reason}")
    print(
        f"demo: {len(summary.pairs)} pairs of {len(summary.subjects)} subjects "
        f"from {len(summary.sources)} portraits -> {OUT_DIR}"
    )


if __name__ == "__main__":
    main()
