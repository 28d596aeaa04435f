"""Layout ``faid`` (Flash and Ambient Illuminations Dataset): ``*_flash.*`` with ``*_ambient.*``.

``*_noflash.*`` is accepted as a synonym of ``*_ambient.*`` (the naming of many public
flash/no-flash samples, e.g. the FAID excerpts of flash-to-ambient repositories).

Files may sit at any depth. Two files pair up when they share folder and prefix
(``People_042_flash.png`` + ``People_042_ambient.png``); the ambient shot plays the studio role.
FAID does not say who is in a photo, so every pair is its own subject (the prefix, with its
folder when not at the top) and the pose is ``0``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.records import Discovery, Rejection
from pipeline.datasets.validate import group_claims, pair_up
from pipeline.io import is_image_name

ROLES = ("flash", "ambient")
# File-name suffix -> role; "_noflash" does not end with "_flash", so the order is safe.
SUFFIX_ROLES = {"flash": "flash", "ambient": "ambient", "noflash": "ambient"}


def discover(raw_dir: Path, files: list[Path]) -> Discovery:
    """Group the files (relative to ``raw_dir``) into flash/ambient candidates."""
    claims = group_claims()
    rejected = []
    for rel in files:
        stem = rel.name.rsplit(".", 1)[0] if "." in rel.name else rel.name
        suffix = next((x for x in SUFFIX_ROLES if stem.lower().endswith(f"_{x}")), None)
        if suffix is None:
            if is_image_name(rel):
                rejected.append(
                    Rejection(
                        (raw_dir / rel).as_posix(),
                        "name is neither <name>_flash.<ext> nor <name>_ambient.<ext> "
                        "(or <name>_noflash.<ext>)",
                    )
                )
            continue
        role = SUFFIX_ROLES[suffix]
        prefix = stem[: -len(suffix) - 1]
        if not prefix:
            rejected.append(Rejection((raw_dir / rel).as_posix(), f"empty name before _{role}"))
            continue
        subject = "-".join([*rel.parent.parts, prefix])
        claims[(subject, "0")][role].append(rel)
    candidates, unpaired = pair_up(claims, raw_dir, ROLES, "faid", "<name>_{role}.<ext>")
    return Discovery(candidates, rejected + unpaired)
