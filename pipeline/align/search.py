"""Optimisation of the affine: a global capture search, multi-start similarity, affine levels.

The paper aligned flash and studio shots with MATLAB ``imregister`` (Sec. 3.1): a local
optimizer from the identity. A local optimizer stays in the basin it starts in, and with
strong relighting that basin can be the wrong one (a pair moved by 2.6 degrees, 1.037 scale
and a 25 px shift once ended 32 px off, reported ok). So before any local step:

1. *capture search*: Mattes MI of a similarity transform (scale, rotation, shift) on an
   exhaustive grid (ITK's exhaustive optimizer) over a ~32 px copy, covering the
   ``capture_*`` ranges of the register params;
2. *multi-start*: Powell's method on the similarity from the best ``starts`` distinct grid
   points on a ~64 px copy, keeping the one with the highest MI on the next finer copy
   (a 64 px copy's MI can prefer a wrong pose that a 128 px copy tells apart);
3. *affine levels*: the full affine, coarse to fine, by regular-step gradient descent
   (or MATLAB's one-plus-one evolutionary optimizer, for comparison).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.align.pyramid import (
    MIN_SAMPLES,
    execute,
    fraction,
    mattes_method,
    mutual_information,
    shrink_to,
)

# Capture grid: the longer side of its copy and the grid steps. A step is about the Powell
# stage's capture radius, so every pose inside the ranges starts in its own basin.
SEARCH_SIDE = 32
ROTATION_STEP_DEG = 4.0
SCALE_STEP = 0.04
SHIFT_STEP = 0.02  # fraction of the longer side
# Powell similarity stage on a PRE_SIDE copy with PRE_SAMPLES pixels.
PRE_SIDE = 64
PRE_SAMPLES = 4096
PRE_ITERATIONS = 10
PRE_LINE_ITERATIONS = 20
# Regular-step optimizer: first and last step in pixels of the level; coarse levels stop at a
# COARSE_MIN_STEP times larger step (the next level refines anyway).
LEARNING_RATE = 2.0
MIN_STEP = 0.005
COARSE_MIN_STEP = 10.0
# MATLAB imregconfig('multimodal') one-plus-one settings.
ONE_PLUS_ONE = {"epsilon": 1.5e-6, "initialRadius": 6.25e-3, "growthFactor": 1.05}


def _steps(half_range: float, step: float) -> int:
    return max(0, math.ceil(half_range / step - 1e-9))


def capture_search(
    fixed: sitk.Image, moving: sitk.Image, centre: tuple[float, ...], params: Any, threads: int
) -> list[np.ndarray]:
    """Similarity parameters (scale, angle, tx, ty) of the best distinct grid poses, best first.

    Exhaustive Mattes MI over ``params.capture_scale`` (+-), ``params.capture_rotation_deg``
    (+-) and ``params.capture_shift`` (+- fraction of the longer side) around the centred
    identity, on a SEARCH_SIDE copy of the coarsest level. Two grid poses are the same start
    when they are neighbours in rotation and scale and within 1.5 steps in shift.
    """
    small_fixed, small_moving = (shrink_to(image, SEARCH_SIDE) for image in (fixed, moving))
    side = max(s * n for s, n in zip(small_fixed.GetSpacing(), small_fixed.GetSize(), strict=True))
    similarity = sitk.Similarity2DTransform()
    similarity.SetCenter(centre)
    steps = [
        _steps(params.capture_scale, SCALE_STEP),
        _steps(params.capture_rotation_deg, ROTATION_STEP_DEG),
        _steps(params.capture_shift, SHIFT_STEP),
        _steps(params.capture_shift, SHIFT_STEP),
    ]
    identity = np.array(similarity.GetParameters(), dtype=float)
    if not any(steps):
        return [identity]
    method = mattes_method(params.histogram_bins, 1.0, params.seed, threads)
    method.SetOptimizerAsExhaustive(steps, stepLength=1.0)
    # The exhaustive optimizer's grid step of parameter i is stepLength * scale_i.
    step_sizes = np.array(
        [SCALE_STEP, math.radians(ROTATION_STEP_DEG), SHIFT_STEP * side, SHIFT_STEP * side]
    )
    method.SetOptimizerScales(step_sizes.tolist())
    method.SetInitialTransform(similarity, inPlace=False)
    grid: list[tuple[float, tuple[float, ...]]] = []

    def on_iteration() -> None:
        grid.append((method.GetMetricValue(), tuple(method.GetOptimizerPosition())))

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.Execute(small_fixed, small_moving)
    # Lowest metric (highest MI) first; ties broken by the pose, so the order is deterministic.
    grid.sort()
    starts: list[np.ndarray] = []
    for _, position in grid:
        pose = np.array(position, dtype=float)
        near = any(
            np.all(np.abs(pose[:2] - s[:2]) <= step_sizes[:2] * 1.01)
            and math.hypot(*(pose[2:] - s[2:])) <= 1.5 * step_sizes[2]
            for s in starts
        )
        if not near:
            starts.append(pose)
        if len(starts) == params.starts:
            break
    return starts or [identity]


def _powell(
    fixed: sitk.Image, moving: sitk.Image, start: np.ndarray, centre: Any, params: Any, threads: int
) -> tuple[sitk.Similarity2DTransform, int]:
    """Similarity (scale, rotation, shift) by Powell's method from ``start``.

    Gradient descent on the full affine crawls along the valley that couples rotation and
    translation and can settle in a shear that mimics a rotation (ITK's 10-degree T1/PD case
    ends near 0-4 degrees); Powell's line searches follow the valley and 4 parameters cannot
    shear. The affine stages then start near the answer.
    """
    similarity = sitk.Similarity2DTransform()
    similarity.SetCenter(centre)
    similarity.SetParameters(tuple(float(v) for v in start))
    method = mattes_method(
        params.histogram_bins, fraction(fixed, 1.0, 0, PRE_SAMPLES), params.seed, threads
    )
    pixel = max(fixed.GetSpacing())
    method.SetOptimizerAsPowell(
        numberOfIterations=PRE_ITERATIONS,
        maximumLineIterations=PRE_LINE_ITERATIONS,
        stepLength=LEARNING_RATE * pixel,
        stepTolerance=COARSE_MIN_STEP * MIN_STEP * pixel,
        valueTolerance=1e-6,
    )
    method.SetOptimizerScales([1.0] * similarity.GetNumberOfParameters())
    count = execute(method, fixed, moving, similarity)[0]
    return similarity, count


def optimise(
    fixed: list[sitk.Image], moving: list[sitk.Image], params: Any, threads: int = 1
) -> tuple[sitk.AffineTransform, str, list[int]]:
    """Capture search, multi-start similarity, then the affine on every pyramid level.

    Returns the transform (ITK physical frame of :func:`pipeline.align.pyramid.build_pyramids`),
    the finest level's stop condition and the iterations per stage (similarity starts summed
    first, then one entry per level).
    """
    transform = sitk.AffineTransform(
        sitk.CenteredTransformInitializer(
            fixed[-1],
            moving[-1],
            sitk.AffineTransform(2),
            sitk.CenteredTransformInitializerFilter.GEOMETRY,
        )
    )
    centre = transform.GetCenter()
    level_iterations: list[int] = []
    if params.optimizer == "regular_step":
        starts = capture_search(fixed[0], moving[0], centre, params, threads)
        pre_fixed, pre_moving = (shrink_to(image, PRE_SIDE) for image in (fixed[0], moving[0]))
        best: tuple[float, sitk.Similarity2DTransform] | None = None
        total = 0
        for start in starts:
            similarity, count = _powell(pre_fixed, pre_moving, start, centre, params, threads)
            total += count
            score = mutual_information(
                fixed[0],
                moving[0],
                similarity,
                params.histogram_bins,
                params.seed,
                threads,
                MIN_SAMPLES,
            )
            if best is None or score > best[0]:
                best = (score, similarity)
        assert best is not None  # capture_search returns at least one start
        level_iterations.append(total)
        transform.SetMatrix(best[1].GetMatrix())
        transform.SetTranslation(best[1].GetTranslation())
    stop = ""
    # One Execute per pyramid level (rather than ITK's built-in level loop) so that the steps
    # follow each level's pixel size, and on pyramid copies made once.
    for level, (fixed_level, moving_level) in enumerate(zip(fixed, moving, strict=True)):
        finest = level == len(fixed) - 1
        method = mattes_method(
            params.histogram_bins,
            fraction(fixed_level, params.sampling_fraction, MIN_SAMPLES),
            params.seed,
            threads,
        )
        pixel = max(fixed_level.GetSpacing())
        if params.optimizer == "regular_step":
            method.SetOptimizerAsRegularStepGradientDescent(
                learningRate=LEARNING_RATE * pixel,
                minStep=MIN_STEP * pixel * (1.0 if finest else COARSE_MIN_STEP),
                numberOfIterations=params.iterations,
                relaxationFactor=0.5,
                gradientMagnitudeTolerance=1e-8,
            )
        else:
            method.SetOptimizerAsOnePlusOneEvolutionary(
                numberOfIterations=params.iterations, seed=params.seed + 1, **ONE_PLUS_ONE
            )
        # Every parameter moves image points by similar amounts in the normalised frame, so
        # unit scales balance both optimizers. (The 1+1 search radius of parameter i is
        # radius / scale_i: MATLAB's radius 6.25e-3 is a matrix step.)
        method.SetOptimizerScales([1.0] * transform.GetNumberOfParameters())
        # Never worse: gradient steps on a sampled, noisy MI can wander off a flat optimum
        # (a real hand-held pair went from MI 0.319 to 0.309); keep the level's start then.
        # (The optimizer's own metric values: no extra evaluation.)
        start = sitk.AffineTransform(transform)
        count, stop, first, last = execute(method, fixed_level, moving_level, transform)
        if last > first:  # the metric is minus MI
            transform.SetParameters(start.GetParameters())
        level_iterations.append(count)
    return transform, stop, level_iterations


__all__ = ["capture_search", "optimise"]
