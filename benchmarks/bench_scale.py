"""Benchmark: how the data chain's cost grows with the number of pairs (issue 24).

For each N of ``--sizes``: a throwaway copy of the project (git + DVC, the project's
``.dvc/config`` cache links), the demo generator's N pairs (``demo.poses`` per subject) at phone
resolution, then ``dvc repro -s`` of check_params, demo, ingest, register, crop and augment one
after the other, at ``data.size`` 512 (the paper's). augment runs twice: materialised (20 PNG
variants per pair, the baseline: what the stage wrote before issue 24) and on the fly (the
crop once + 20 matrices). For each: seconds per stage per pair, files and bytes of the
workspace (data/) and of .dvc/cache (hardlinked files counted once, as ``du``), the ratio of
workspace + cache to the workspace alone (``du -sc data .dvc/cache`` / ``du -sLc data``), the
time of ``dvc status``, and the training loader (pipeline.training.data.PairDataset in a
DataLoader of 2 workers, batch 4) over one epoch of the train split: images/s and per worker,
without and with the in-memory cache (the on-the-fly figures after ``dvc gc -w``: the cache of a
chain run on the fly only). Then the growth fitted per stage (log-log slope through
the sizes: 1 = linear) and a straight line (fixed cost + per pair) extrapolated to 495
pairs (the paper) and 10,000.

Run: .venv/bin/python benchmarks/bench_scale.py [--sizes 8 24] [--width 1536] [--height 2048]
     [--size 512] [--workers 2] [--keep DIR]; the table again from saved figures: --report FILE
     (the JSON lines it printed per size)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("pipeline", "stages", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore")
STAGES = ("check_params", "demo", "ingest", "register", "crop", "augment")
TARGETS = (495, 10_000)  # the paper's pairs; a large public set (FAID-like)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": "1",
            "DEEPFLASH_MLFLOW": "0",
        }
    )
    return env


def _run(root: Path, *cmd: str) -> float:
    """Seconds ``cmd`` took in ``root``; stops the benchmark with its output when it fails."""
    env = _env() | {"PYTHONPATH": str(root)}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(
            f"`{' '.join(cmd)}` failed in {root}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return seconds


def _project(root: Path, params: dict[str, Any]) -> None:
    root.mkdir(parents=True)
    for name in PROJECT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(root, "git", "init", "-q")
    _run(root, "dvc", "init", "-q")
    shutil.copy2(REPO / ".dvc" / "config", root / ".dvc" / "config")


def disk(*folders: Path) -> tuple[int, int, int]:
    """(files, bytes on disk with each inode once (du), apparent bytes of every path (du -L))."""
    seen: set[tuple[int, int]] = set()
    files = used = apparent = 0
    for folder in folders:
        for path in (p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            files += 1
            apparent += stat.st_size
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                used += stat.st_blocks * 512
    return files, used, apparent


def loader_speed(root: Path, size: int, workers: int, cache: bool) -> dict[str, float]:
    """One epoch of the train split through a DataLoader: images/s (and per worker)."""
    from torch.utils.data import DataLoader

    from pipeline.training.data import PairDataset

    started = time.perf_counter()
    dataset = PairDataset(
        root / "data/processed/index.csv", "train", root=root, size=size, cache=cache
    )
    prepared = time.perf_counter() - started
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers)
    started = time.perf_counter()
    images = sum(len(batch[0]) for batch in loader)
    seconds = time.perf_counter() - started
    return {
        "images": images,
        "images_per_s": images / seconds,
        "per_worker": images / seconds / workers,
        "prepare_s": prepared,
        "cache_mb": dataset.cached_bytes / 2**20,
    }


def measure(n: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Every figure of one N: the chain once, augment materialised, then on the fly."""
    poses = 2
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["size"] = args.size
    params["demo"].update(
        {
            "n_subjects": max(3, n // poses),
            "poses": poses,
            "width": args.width,
            "height": args.height,
        }
    )
    for group in ("register", "crop", "augment"):
        params[group]["workers"] = args.workers
    params["augment"]["materialise"] = True
    root = scratch / f"n{n}"
    _project(root, params)
    pairs = max(3, n // poses) * poses
    result: dict[str, Any] = {"pairs": pairs, "seconds": {}}
    for stage in STAGES:
        result["seconds"][stage] = _run(root, "dvc", "repro", "-s", stage)
    result["crop_bytes"] = disk(root / "data/interim/faces")[1]
    for mode in ("materialised", "on_the_fly"):
        if mode == "on_the_fly":
            params["augment"]["materialise"] = False
            (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            _run(root, "dvc", "repro", "-s", "check_params")
            result["seconds"]["augment_on_the_fly"] = _run(root, "dvc", "repro", "-s", "augment")
            # drop the materialised run's cache objects: the cache of a chain run on the fly
            _run(root, "dvc", "gc", "--workspace", "--force", "-q")
        work, cache = disk(root / "data"), disk(root / ".dvc/cache")
        both = disk(root / "data", root / ".dvc/cache")
        result[mode] = {
            "processed": disk(root / "data/processed")[:2],
            "workspace": work,
            "cache": cache,
            "with_cache_over_workspace": both[1] / work[2],
            "dvc_status_s": _run(root, "dvc", "status"),
            "loader": loader_speed(root, args.size, args.workers, cache=False),
            "loader_cached": loader_speed(root, args.size, args.workers, cache=True),
        }
    return result


def _fit(sizes: list[int], values: list[float]) -> tuple[float, float, float]:
    """(b, k, c): b the log-log slope (value ~ N^b; 1 = linear growth), and the straight line
    value = c + k * N (c: the fixed cost of a stage, DVC's and Python's start-up) used to
    extrapolate."""
    if len(sizes) < 2:
        return 1.0, values[0] / sizes[0], 0.0
    b = np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-9)), 1)[0]
    k, c = np.polyfit(sizes, values, 1)
    if k < 0:  # a cost that shrinks with N is noise about a constant (check_params, dvc status)
        k, c = 0.0, float(np.mean(values))
    return float(b), float(k), float(c)


def _mb(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


def report(results: list[dict[str, Any]]) -> None:
    """Print the per-N table, then the fits and extrapolations."""
    sizes = [r["pairs"] for r in results]
    stages = [*STAGES, "augment_on_the_fly"]
    print("\nseconds per pair (dvc repro -s <stage>, DVC's hashing and cache commit included)")
    print("stage".ljust(20) + "".join(f"N={n}".rjust(10) for n in sizes))
    for stage in stages:
        cells = "".join(f"{r['seconds'][stage] / r['pairs']:10.3f}" for r in results)
        print(stage.ljust(20) + cells)
    for mode in ("materialised", "on_the_fly"):
        print(f"\naugment {mode}")
        for r in results:
            m = r[mode]
            load, cached = m["loader"], m["loader_cached"]
            print(
                f"N={r['pairs']}: processed {m['processed'][0]} files {_mb(m['processed'][1])} "
                f"({m['processed'][1] / r['crop_bytes']:.2f}x the crops {_mb(r['crop_bytes'])}); "
                f"workspace data/ {m['workspace'][0]} files {_mb(m['workspace'][1])}, "
                f".dvc/cache {m['cache'][0]} files {_mb(m['cache'][1])}, "
                f"workspace+cache / workspace {m['with_cache_over_workspace']:.3f}; "
                f"dvc status {m['dvc_status_s']:.2f} s; loader at 512 px, 2 workers: "
                f"{load['images_per_s']:.0f} img/s ({load['per_worker']:.0f}/worker), cached "
                f"{cached['images_per_s']:.0f} img/s ({cached['per_worker']:.0f}/worker, "
                f"{cached['cache_mb']:.1f} MB, built in {cached['prepare_s']:.1f} s)"
            )
    print("\ngrowth: b = log-log slope (1 = linear); line c + k N extrapolated")
    series = {f"{s} s": [r["seconds"][s] for r in results] for s in stages}
    for mode in ("materialised", "on_the_fly"):
        series[f"{mode} processed MB"] = [r[mode]["processed"][1] / 2**20 for r in results]
        series[f"{mode} files"] = [float(r[mode]["processed"][0]) for r in results]
        series[f"{mode} dvc status s"] = [r[mode]["dvc_status_s"] for r in results]
    header = "series".ljust(32) + "b".rjust(6) + "k".rjust(9) + "c".rjust(9)
    print(header + "".join(f"N={t}".rjust(12) for t in TARGETS))
    for name, values in series.items():
        b, k, c = _fit(sizes, values)
        cells = "".join(f"{c + k * t:12.1f}" for t in TARGETS)
        print(name.ljust(32) + f"{b:6.2f}{k:9.3f}{c:9.1f}" + cells)


def main() -> int:
    """Measure every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the copies here")
    parser.add_argument("--report", type=Path, default=None, help="JSON lines of a run")
    args = parser.parse_args()
    if args.report is not None:
        lines = args.report.read_text().splitlines()
        report([json.loads(line) for line in lines if line.startswith("{")])
        return 0
    torch.set_num_threads(1)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        results = []
        for n in args.sizes:
            started = time.perf_counter()
            results.append(measure(n, args, scratch))
            print(f"N={n}: {time.perf_counter() - started:.0f} s", flush=True)
            print(json.dumps(results[-1]), flush=True)  # each size as soon as it is measured
        report(results)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
