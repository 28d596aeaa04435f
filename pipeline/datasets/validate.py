"""Safe scanning of a raw folder and the checks every image and pair must pass.

Nothing here writes into the raw folder. Files are listed without following folder symlinks;
a file symlink is used only when its target stays inside the raw folder. Every image is checked
from its header first (size, decompression bomb) and only then decoded in full with the
project's reader (truncated or corrupt data), so whatever ingest accepts, later stages can read.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.datasets.records import Candidate, Pair, Rejection
from pipeline.io import ImageReadError, image_size, read_image, safe_name


def make_pair_id(subject: str, pose: str) -> str:
    """The manifest's pair_id: ``<subject>__<pose>``, filesystem-safe."""
    return f"{safe_name(subject)}__{safe_name(pose)}"


def within(path: Path, root: Path) -> bool:
    """True when ``path`` is ``root`` or below it (both taken as given, not resolved)."""
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


@dataclass
class Scan:
    """Files of a raw folder (paths relative to it) and entries refused while walking."""

    files: list[Path] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def scan_tree(raw_dir: Path) -> Scan:
    """List files under ``raw_dir`` (sorted, hidden entries skipped, folder symlinks refused)."""
    raw_dir = Path(raw_dir)
    real_root = raw_dir.resolve()
    scan = Scan()
    for top, dirs, files in os.walk(raw_dir, followlinks=False):
        top_path = Path(top)
        dirs.sort()
        for name in list(dirs):
            path = top_path / name
            if name.startswith("."):
                dirs.remove(name)
            elif path.is_symlink():
                # Never followed: it could leave the folder or loop; its target, when inside
                # the raw folder, is read where it really is.
                dirs.remove(name)
                target = path.resolve()
                reason = (
                    f"symlink leaves the raw folder (-> {target})"
                    if not within(target, real_root)
                    else f"symlinked folder not followed (-> {target})"
                )
                scan.rejected.append(Rejection(str(path), reason))
        for name in sorted(files):
            if not name.startswith("."):
                scan.files.append((top_path / name).relative_to(raw_dir))
    return scan


@dataclass(frozen=True)
class ImageInfo:
    """Upright size of a checked image."""

    width: int
    height: int


class ImageChecker:
    """Checks images once each: symlink target, header, bomb, minimum size, full decode."""

    def __init__(self, raw_dir: Path, min_side: int, max_pixels: int):
        self.raw_dir = Path(raw_dir).absolute()
        self.real_root = Path(raw_dir).resolve()
        self.min_side = min_side
        self.max_pixels = max_pixels
        self._cache: dict[Path, ImageInfo | str] = {}

    def check(self, path: Path) -> ImageInfo | str:
        """ImageInfo when the image is usable, else the reason (a short sentence)."""
        path = Path(path)
        if path not in self._cache:
            self._cache[path] = self._check(path)
        return self._cache[path]

    def _check(self, path: Path) -> ImageInfo | str:
        if path.is_symlink() and within(path.absolute(), self.raw_dir):
            target = path.resolve()
            if not within(target, self.real_root):
                return f"symlink leaves the raw folder (-> {target})"
            if not target.exists():
                return f"broken symlink (-> {target})"
        try:
            width, height = image_size(path)
        except ImageReadError as error:
            return error.reason
        if width * height > self.max_pixels:
            return (
                f"decompression bomb: {width}x{height} = {width * height} pixels > "
                f"max_pixels {self.max_pixels} (header only, not decoded)"
            )
        if min(width, height) < self.min_side:
            return f"too small: {width}x{height}, shorter side < min_side {self.min_side}"
        try:
            read_image(path, max_pixels=self.max_pixels)  # full decode: truncated/corrupt data
        except ImageReadError as error:
            return error.reason
        except MemoryError:
            return "unreadable (out of memory while decoding)"
        return ImageInfo(width, height)


def pair_up(
    claims: dict[tuple[str, str], dict[str, list[Path]]],
    raw_dir: Path,
    roles: tuple[str, str],
    source: str,
    name_hint: str,
) -> tuple[list[Candidate], list[Rejection]]:
    """Turn {(subject, pose): {role: [files]}} into candidates; refuse orphans and duplicates.

    ``roles`` = (flash role, studio role) as they appear in file names, e.g. ("flash", "studio");
    ``name_hint`` shows the expected name of a missing partner, e.g. "{subject}/{pose}_{role}.<ext>".
    """
    candidates, rejected = [], []
    flash_role, studio_role = roles
    for (subject, pose), by_role in sorted(claims.items()):
        key = f"{subject}/{pose}"
        flashes, studios = by_role.get(flash_role, []), by_role.get(studio_role, [])
        every = sorted(flashes + studios)
        crowded = [role for role in roles if len(by_role.get(role, [])) > 1]
        if crowded:
            for role in crowded:
                files = sorted(by_role[role])
                names = ", ".join(f.name for f in files)
                for f in files:
                    rejected.append(
                        Rejection(
                            _show(raw_dir, f),
                            f"{len(files)} files claim the {role} image of pair {key}: {names}",
                            key,
                        )
                    )
            for f in every:
                if not any(f in by_role[role] for role in crowded):
                    rejected.append(
                        Rejection(
                            _show(raw_dir, f),
                            f"pair {key} rejected: several files claim its "
                            f"{' and '.join(crowded)} image",
                            key,
                        )
                    )
            continue
        if not flashes or not studios:
            present, missing = (flash_role, studio_role) if flashes else (studio_role, flash_role)
            hint = name_hint.format(role=missing, pose=pose, subject=subject)
            for f in every:
                rejected.append(
                    Rejection(
                        _show(raw_dir, f),
                        f"{present} image without {missing} partner (expected {hint})",
                        key,
                    )
                )
            continue
        candidates.append(
            Candidate(subject, pose, raw_dir / flashes[0], raw_dir / studios[0], source)
        )
    return candidates, rejected


def validate_candidates(
    candidates: Sequence[Candidate],
    checker: ImageChecker,
    aspect_tolerance: float,
    progress: bool = False,
) -> tuple[list[Pair], list[Rejection]]:
    """Check both images of every candidate and their aspect ratios; unique pair ids.

    ``progress`` shows a progress bar (every image is decoded in full: the slow part of ingest).
    """
    pairs, rejected = [], []
    seen: dict[str, str] = {}
    for cand in tqdm(candidates, desc="ingest", unit="pair", disable=not progress):
        results = {"flash": checker.check(cand.flash), "studio": checker.check(cand.studio)}
        bad = {role: r for role, r in results.items() if isinstance(r, str)}
        if bad:
            for role, path in (("flash", cand.flash), ("studio", cand.studio)):
                if role in bad:
                    rejected.append(Rejection(path.as_posix(), bad[role], cand.key))
                else:
                    other = "studio" if role == "flash" else "flash"
                    rejected.append(
                        Rejection(
                            path.as_posix(),
                            f"partner rejected ({other} {_name(cand, other)}: {bad[other]})",
                            cand.key,
                        )
                    )
            continue
        flash, studio = results["flash"], results["studio"]
        a_flash, a_studio = flash.width / flash.height, studio.width / studio.height
        difference = abs(a_flash - a_studio) / a_flash
        if difference > aspect_tolerance:
            reason = (
                f"aspect mismatch: flash {flash.width}x{flash.height} ({a_flash:.3f}) vs studio "
                f"{studio.width}x{studio.height} ({a_studio:.3f}), relative difference "
                f"{difference:.3f} > aspect_tolerance {aspect_tolerance}"
            )
            rejected += [
                Rejection(cand.flash.as_posix(), reason, cand.key),
                Rejection(cand.studio.as_posix(), reason, cand.key),
            ]
            continue
        pair_id = make_pair_id(cand.subject, cand.pose)
        if pair_id in seen:
            reason = f"pair id {pair_id} already used by pair {seen[pair_id]}"
            rejected += [
                Rejection(cand.flash.as_posix(), reason, cand.key),
                Rejection(cand.studio.as_posix(), reason, cand.key),
            ]
            continue
        seen[pair_id] = cand.key
        pairs.append(
            Pair(
                pair_id=pair_id,
                subject=cand.subject,
                pose=cand.pose,
                flash_path=cand.flash.as_posix(),
                studio_path=cand.studio.as_posix(),
                width=flash.width,
                height=flash.height,
                studio_width=studio.width,
                studio_height=studio.height,
                source=cand.source,
            )
        )
    return pairs, rejected


def group_claims() -> dict[tuple[str, str], dict[str, list[Path]]]:
    """An empty {(subject, pose): {role: [files]}} mapping for the layout readers."""
    return defaultdict(lambda: defaultdict(list))


def _show(raw_dir: Path, relative: Path) -> str:
    return (raw_dir / relative).as_posix()


def _name(cand: Candidate, role: str) -> str:
    return (cand.flash if role == "flash" else cand.studio).name
