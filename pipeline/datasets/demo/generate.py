"""Write the demo dataset: every subject x pose rendered, truth.csv, and a contact sheet."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import DemoParams
from pipeline.datasets.demo.render import render_pair
from pipeline.datasets.demo.sources import default_prepared_sources, folder_sources, prepare_source
from pipeline.datasets.demo.specs import (
    Misalignment,
    SubjectSpec,
    make_pose_specs,
    make_subject_specs,
)
from pipeline.datasets.truth import TRUTH_COLUMNS
from pipeline.io import write_csv, write_image


@dataclass
class DemoPair:
    """A written demo pair: where it is and its ground-truth misalignment."""

    subject: str
    pose: str
    flash: Path
    studio: Path
    matrix: np.ndarray
    misalignment: Misalignment
    face: tuple[float, float, float, float]  # face centre x, y, width, height in flash px


@dataclass
class DemoSummary:
    """What :func:`generate_demo` wrote."""

    out_dir: Path
    pairs: list[DemoPair]
    subjects: list[SubjectSpec]
    sources: list[str]
    faces_not_found: list[str] = field(default_factory=list)
    skipped_portraits: list[tuple[str, str]] = field(default_factory=list)

    def metrics(self) -> dict:
        """Counts for metrics/demo.json."""
        return {
            "pairs": len(self.pairs),
            "subjects": len(self.subjects),
            "poses": len({p.pose for p in self.pairs}),
            "sources": len(self.sources),
            "derived_subjects": sum(1 for s in self.subjects if s.variant > 0),
            "sources_without_face": len(self.faces_not_found),
            "skipped_portraits": len(self.skipped_portraits),
        }


def generate_demo(
    out_dir: str | Path,
    demo: DemoParams,
    *,
    flash: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoSummary:
    """Write ``<subject>/<pose>_flash.jpg``, ``<pose>_studio.jpg``, truth.csv, contact_sheet.png.

    ``demo`` is the ``demo`` params group (subjects, poses, size, seed, portraits, the
    misalignment limits, the flash noise). ``out_dir`` must be empty or absent; with
    ``overwrite`` a previous demo folder (one holding truth.csv) is replaced. ``flash=False``
    lights the flash shot like the studio one (tests); ``progress`` shows a progress bar.
    Returns what was written, with each pair's matrix.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: not empty (use overwrite to replace a demo)")
        if not (out_dir / "truth.csv").is_file():
            raise FileExistsError(f"{out_dir}: not a demo folder (no truth.csv); not replacing it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    n_subjects, poses, seed = demo.n_subjects, demo.poses, demo.seed
    width, height = demo.width, demo.height
    if demo.portraits_dir is None:
        sources, skipped = list(default_prepared_sources())[:n_subjects], []
    else:
        raw_sources, skipped = folder_sources(demo.portraits_dir, limit=n_subjects)
        sources = [prepare_source(name, image) for name, image in raw_sources]
    subjects = make_subject_specs([s.name for s in sources], n_subjects, seed)

    limits = (demo.max_rotation_deg, demo.max_scale, demo.max_shift_frac, demo.max_shear)
    work = [
        (subject, pose)
        for subject in subjects
        for pose in make_pose_specs(subject, poses, seed, width, height, *limits)
    ]
    pairs, rows, thumbs = [], [], []
    for subject, pose in tqdm(work, desc="demo", unit="pair", disable=not progress):
        rendered = render_pair(
            sources[subject.source],
            subject,
            pose,
            width,
            height,
            demo.noise_sigma,
            seed,
            flash=flash,
        )
        folder = out_dir / subject.name
        flash_path = write_image(folder / f"{pose.name}_flash.jpg", rendered.flash)
        studio_path = write_image(folder / f"{pose.name}_studio.jpg", rendered.studio)
        m = rendered.matrix
        pairs.append(
            DemoPair(
                subject.name,
                pose.name,
                flash_path,
                studio_path,
                m,
                pose.misalignment,
                rendered.face,
            )
        )
        rows.append(
            {
                "subject": subject.name,
                "pose": pose.name,
                "flash": flash_path.relative_to(out_dir).as_posix(),
                "studio": studio_path.relative_to(out_dir).as_posix(),
                "width": width,
                "height": height,
                "a": m[0, 0],
                "b": m[0, 1],
                "tx": m[0, 2],
                "c": m[1, 0],
                "d": m[1, 1],
                "ty": m[1, 2],
                **asdict(pose.misalignment),
                **dict(zip(("face_x", "face_y", "face_w", "face_h"), rendered.face, strict=True)),
            }
        )
        thumbs.append((f"{subject.name} {pose.name}", rendered.flash, rendered.studio))

    truth = pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))
    write_csv(out_dir / "truth.csv", truth, float_format="%.12g")
    write_image(out_dir / "contact_sheet.png", contact_sheet(thumbs, columns=2 * poses))
    return DemoSummary(
        out_dir=out_dir,
        pairs=pairs,
        subjects=subjects,
        sources=[s.name for s in sources],
        faces_not_found=[s.name for s in sources if not s.face_detected],
        skipped_portraits=skipped,
    )


def contact_sheet(
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], columns: int = 4, thumb_width: int = 144
) -> np.ndarray:
    """A grid of flash | studio thumbnails with labels, as uint8 RGB."""
    if not pairs:
        return np.zeros((8, 8, 3), np.uint8)
    h0, w0 = pairs[0][1].shape[:2]
    tw, th = thumb_width, max(1, round(thumb_width * h0 / w0))
    cells = []
    for label, flash_img, studio_img in pairs:
        for kind, img in (("flash", flash_img), ("studio", studio_img)):
            cell = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            cell = (cell.clip(0, 1) * 255).round().astype(np.uint8)
            cell[:26] = (cell[:26] * 0.35).astype(np.uint8)  # dark band: labels stay legible
            for line, text in enumerate((label, kind)):
                cv2.putText(
                    cell,
                    text,
                    (3, 10 + 11 * line),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.3,
                    (255, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
            cells.append(cell)
    rows = math.ceil(len(cells) / columns)
    gap = 4
    sheet = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 255, dtype=np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = cell
    return sheet
