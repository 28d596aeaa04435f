"""Records shared by the raw-layout readers: candidates, accepted pairs, rejections."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """The raw folder as a whole cannot be read (missing, unknown layout, unsafe output path)."""


@dataclass(frozen=True)
class Rejection:
    """An input that could not be used. ``pair`` names the pair it cost ("subject/pose"), if any."""

    file: str
    reason: str
    pair: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A flash/studio pair found by a layout reader, not yet validated."""

    subject: str
    pose: str
    flash: Path
    studio: Path
    source: str

    @property
    def key(self) -> str:
        """Human-readable pair key used in reasons and reject counts."""
        return f"{self.subject}/{self.pose}"


@dataclass(frozen=True)
class Pair:
    """A validated pair: one manifest row (without the split)."""

    pair_id: str
    subject: str
    pose: str
    flash_path: str
    studio_path: str
    width: int
    height: int
    studio_width: int
    studio_height: int
    source: str


@dataclass
class Discovery:
    """What a layout reader found: pair candidates and rejected inputs."""

    candidates: list[Candidate] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    missing_lights: int = 0  # Yale B: studio light images absent from a person's folder


@dataclass
class DatasetResult:
    """Validated pairs and every rejected input of one raw folder."""

    pairs: list[Pair]
    rejected: list[Rejection]
    missing_lights: int = 0

    @property
    def rejected_pairs(self) -> list[str]:
        """Pair keys lost to rejections (sorted, unique)."""
        return sorted({r.pair for r in self.rejected if r.pair is not None})

    @property
    def reject_fraction(self) -> float:
        """Rejected pairs / (accepted + rejected pairs); 1.0 when nothing was found at all."""
        total = len(self.pairs) + len(self.rejected_pairs)
        return len(self.rejected_pairs) / total if total else 1.0
