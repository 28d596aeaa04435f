"""Layout ``pairs``: ``<raw>/<subject>/<pose>_flash.<ext>`` with ``<pose>_studio.<ext>``.

Files directly in the raw folder (a demo's truth.csv and contact sheet, a README) are not
pairs and are ignored; so are non-image files without a ``_flash``/``_studio`` name. Image files
that do not follow the naming, or sit deeper than one folder, are rejected with the reason.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.records import Discovery, Rejection
from pipeline.datasets.validate import group_claims, pair_up
from pipeline.io import is_image_name

ROLES = ("flash", "studio")


def discover(raw_dir: Path, files: list[Path]) -> Discovery:
    """Group the files (relative to ``raw_dir``) into flash/studio candidates by subject/pose."""
    claims = group_claims()
    rejected = []
    for rel in files:
        role, pose = _role(rel.name)
        if len(rel.parts) == 1:
            continue  # top-level files are not in a subject folder: not pair images
        if len(rel.parts) > 2:
            if role or is_image_name(rel):
                rejected.append(
                    Rejection(
                        (raw_dir / rel).as_posix(),
                        "nested too deep: expected <subject>/<pose>_flash|_studio.<ext>",
                    )
                )
            continue
        if role is None:
            if is_image_name(rel):
                rejected.append(
                    Rejection(
                        (raw_dir / rel).as_posix(),
                        "name is neither <pose>_flash.<ext> nor <pose>_studio.<ext>",
                    )
                )
            continue
        subject = rel.parts[0]
        if not pose:
            rejected.append(
                Rejection((raw_dir / rel).as_posix(), f"empty pose name before _{role}")
            )
            continue
        claims[(subject, pose)][role].append(rel)
    candidates, unpaired = pair_up(claims, raw_dir, ROLES, "pairs", "{subject}/{pose}_{role}.<ext>")
    return Discovery(candidates, rejected + unpaired)


def _role(name: str) -> tuple[str | None, str]:
    """("flash" | "studio" | None, pose) from a file name, case-insensitively."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    for role in ROLES:
        suffix = f"_{role}"
        if stem.lower().endswith(suffix):
            return role, stem[: -len(suffix)]
    return None, ""
