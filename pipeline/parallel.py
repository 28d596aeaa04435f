"""Order-keeping process-pool map for the per-pair stages (crop, augment)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import cv2

T = TypeVar("T")
R = TypeVar("R")


def _single_threaded_opencv() -> None:
    # One OpenCV thread per worker: the pool already uses the cores (oversubscription slows
    # every worker down on a 2-core machine).
    cv2.setNumThreads(1)


def parallel_map(
    fn: Callable[[T], R],
    jobs: Iterable[T],
    workers: int,
    start_method: str | None = None,
    preload: tuple[str, ...] = (),
) -> Iterator[R]:
    """``map(fn, jobs)``, results in job order, over ``workers`` processes.

    With ``workers`` <= 1 (or a single job) it runs in this process, which keeps tracebacks
    simple and avoids the pool's start-up cost. ``fn`` and the jobs must be picklable
    (a module-level function and plain values). ``start_method`` (``"forkserver"``,
    ``"spawn"``; default: the platform's, fork on Linux): a forked worker inherits
    OpenCV's thread pool half-alive when this process already ran a parallel OpenCV call, and
    its first OpenCV call then hangs; callers that cannot know use ``"forkserver"``.
    ``preload``: modules the fork server imports once before forking the workers (heavy
    imports, e.g. face_recognition's models, then load once instead of once per worker).
    """
    jobs = list(jobs)
    workers = min(workers, len(jobs))
    if workers <= 1:
        yield from map(fn, jobs)
        return
    context = multiprocessing.get_context(start_method) if start_method else None
    if preload and start_method == "forkserver":
        context.set_forkserver_preload(list(preload))
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_single_threaded_opencv
    ) as pool:
        yield from pool.map(fn, jobs)


__all__ = ["parallel_map"]
