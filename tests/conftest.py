"""Shared fixtures: the read-only real test images in ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPFLASH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; the calling test is skipped (with a reason) when absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


@pytest.fixture
def shared_data() -> Path:
    """Root of ../shared/data (read-only real images); skips the test when absent."""
    return shared_path()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny tensors: as fast as several, and OpenMP threads
    crawl on a busy shared machine. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch  # here, not at the top: most test modules never need torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
