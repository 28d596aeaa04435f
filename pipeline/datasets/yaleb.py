"""Layout ``yaleb``: Extended Yale Face Database B, cropped (``yaleBNN/yaleBNN_P00A+000E+00.pgm``).

One pair per person: the flash image is the shot lit by the light on the camera axis
(``P00A+000E+00``, azimuth 0, elevation 0: flash-like). Light adds up, so the mean of shots lit
from several directions approximates soft, even studio light; the set of directions is a
parameter. Both images are written as PNG into the derived folder (never into the raw folder)
and the pair points there. A missing or unreadable studio light is recorded and left out of the
mean; a person without the flash image or without any usable studio light is rejected.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.records import Candidate, Discovery, Rejection
from pipeline.datasets.validate import ImageChecker, ImageInfo, make_pair_id
from pipeline.io import ImageReadError, read_image, write_image

FLASH_LIGHT = "P00A+000E+00"
POSE = "P00"  # the cropped set is the frontal pose
_PERSON = re.compile(r"^yaleB\d+$")


def person_dirs(raw_dir: Path, files: list[Path]) -> list[Path]:
    """Folders named ``yaleBNN`` holding files, at most two levels down (relative, sorted)."""
    found = {rel.parent for rel in files if _PERSON.match(rel.parent.name) and len(rel.parts) <= 3}
    return sorted(found)


def discover(
    raw_dir: Path,
    files: list[Path],
    checker: ImageChecker,
    studio_lights: list[str],
    derived_dir: Path,
    progress: bool = False,
) -> Discovery:
    """Build each person's flash and studio-mean PNGs in ``derived_dir``; candidates point there."""
    present = set(files)
    found = Discovery()
    people = person_dirs(raw_dir, files)
    for rel_dir in tqdm(people, desc="yaleb", unit="person", disable=not progress):
        person = rel_dir.name
        key = f"{person}/{POSE}"
        flash_rel = rel_dir / f"{person}_{FLASH_LIGHT}.pgm"
        flash_path = raw_dir / flash_rel
        if flash_rel not in present:
            found.rejected.append(
                Rejection(
                    flash_path.as_posix(), "flash image (light on the camera axis) missing", key
                )
            )
            continue
        flash_info = checker.check(flash_path)
        if isinstance(flash_info, str):
            found.rejected.append(Rejection(flash_path.as_posix(), flash_info, key))
            continue

        total, used = None, []
        for light in studio_lights:
            rel = rel_dir / f"{person}_{light}.pgm"
            path = raw_dir / rel
            if rel not in present:
                found.missing_lights += 1
                found.rejected.append(
                    Rejection(
                        path.as_posix(), f"studio light {light} missing (left out of the mean)"
                    )
                )
                continue
            image = _read_light(path, checker, flash_info)
            if isinstance(image, str):
                found.rejected.append(
                    Rejection(path.as_posix(), f"{image} (studio light left out of the mean)")
                )
                continue
            total = image if total is None else total + image
            used.append(light)
        if total is None:
            found.rejected.append(
                Rejection(
                    (raw_dir / rel_dir).as_posix(),
                    f"no usable studio light among {', '.join(studio_lights)}",
                    key,
                )
            )
            continue

        pair_id = make_pair_id(person, POSE)
        flash = read_image(flash_path, max_pixels=checker.max_pixels)[..., 0]
        derived_flash = write_image(derived_dir / f"{pair_id}_flash.png", flash)
        derived_studio = write_image(derived_dir / f"{pair_id}_studio.png", total / len(used))
        found.candidates.append(Candidate(person, POSE, derived_flash, derived_studio, "yaleb"))
    return found


def _read_light(path: Path, checker: ImageChecker, flash: ImageInfo) -> np.ndarray | str:
    """Grey float image of one studio light, or the reason it cannot be used."""
    info = checker.check(path)
    if isinstance(info, str):
        return info
    if (info.width, info.height) != (flash.width, flash.height):
        return (
            f"size {info.width}x{info.height} differs from the flash image "
            f"{flash.width}x{flash.height}"
        )
    try:
        return read_image(path, max_pixels=checker.max_pixels)[..., 0].astype(np.float64)
    except ImageReadError as error:
        return error.reason
