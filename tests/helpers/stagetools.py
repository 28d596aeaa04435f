"""Helpers for the tests that run a DVC stage script in a scratch folder (crop, augment)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_stage(root: Path, name: str) -> subprocess.CompletedProcess:
    """Run ``stages/<name>.py`` with ``root`` as the working folder (its params.yaml, data/)."""
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{name}.py")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, by path relative to it."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
