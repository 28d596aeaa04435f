"""Benchmark: training throughput (images/s), each figure against a named baseline.

Three measurements (``--modes``, default all):

- ``step``: the train stage's per-batch work alone (the batch to the device, BL and encoding C
  on the device, the model's own ``training_step`` with autocast and channels_last on CUDA) on
  random images. Baseline: the paper (Capece et al. 2019, Sec. 5): 62 epochs of 9,900 images
  of 512x512 in about 5 days on a Titan Xp, ~458,000 iterations of batch 4: ~4.2 images/s at
  width 1.0.
- ``ddp``: whole trainings (:func:`pipeline.training.loop.train`, data loading, validation
  excluded from the epoch time) on a generated processed set: 2 gloo processes under torchrun
  (DistributedDataParallel, batch b each, ``train.threads: auto`` = half the cores each)
  against the baseline 1 process (batch b, every core).
- ``concurrent``: two independent trainings started at once (as ``dvc queue start -j 2``
  does), with ``train.threads: auto`` (each its share of the cores) against the baseline of the
  same two with every core each (what torch does by default: oversubscribed), and against one
  training alone. Throughput of a pair = the sum of both trainings' images/s.

Whole-training figures come from each run's metrics (``images_per_s``: training images over
the seconds of the training epochs).

Run: .venv/bin/python benchmarks/bench_train.py [--modes step ddp concurrent] [--size 64]
     [--width 0.125] [--images 32] [--epochs 2] [--batch 4] [--arch deepflash]
     step only: [--sizes 512 128] [--widths 1.0 0.25] [--steps 3] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import load_params
from pipeline.core.bilateral import make_blur
from pipeline.core.losses import make_loss
from pipeline.io import write_image
from pipeline.models import adam_settings, build_model
from pipeline.models.base import StepContext
from pipeline.runtime import available_cores, make_autocast, resolve_amp, resolve_device
from pipeline.training.steps import MemoBlur, encode_batch

REPO = Path(__file__).resolve().parents[1]
PAPER_IMAGES_PER_S = 4.2  # 458,000 iterations x batch 4 / ~5 days on a Titan Xp (512 px)

# --------------------------------------------------------------------------------------------
# step: the per-batch work against the paper
# --------------------------------------------------------------------------------------------


def measure_step(
    arch: str, width: float, size: int, batch: int, steps: int, device: torch.device, amp: str
) -> dict[str, float]:
    """Training images/s of ``steps`` timed steps (after one warm-up step) on random images."""
    params = load_params()
    torch.manual_seed(0)
    model = build_model(arch, width, size=size).to(device)
    amp_dtype = resolve_amp(amp, device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizers = model.configure_optimizers(adam_settings(arch, params.train.optimizer))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    autocast = make_autocast(device, amp_dtype)
    loss_fn = make_loss(True)
    bl = make_blur(params.bilateral, size)
    flash, studio = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)

    def step() -> None:
        blur = MemoBlur(bl)
        _, inputs, targets = encode_batch(flash, studio, "C", blur, device, channels_last)
        context = StepContext(model.ddp_parts(), optimizers, loss_fn, autocast, scaler)
        model.training_step(inputs, targets, context)
        context.end_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    return {"images_per_s": steps * batch / seconds, "seconds_per_step": seconds / steps}


def run_step_mode(args: argparse.Namespace) -> None:
    """Print images/s per (size, width) and the ratio to the paper's ~4.2 images/s."""
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"\n[step] {args.arch}, batch {args.batch}, encoding C, on {where}")
    print(f"baseline: the paper, ~{PAPER_IMAGES_PER_S} images/s at 512 px, width 1.0, Titan Xp")
    print(f"{'size':>5} {'width':>6} {'s/step':>8} {'images/s':>9} {'x paper':>8}")
    for size in dict.fromkeys(args.sizes):
        for width in dict.fromkeys(args.widths):
            try:
                r = measure_step(args.arch, width, size, args.batch, args.steps, device, args.amp)
            except torch.cuda.OutOfMemoryError:
                print(f"{size:>5} {width:>6g}  out of device memory", flush=True)
                continue
            ratio = r["images_per_s"] / PAPER_IMAGES_PER_S
            print(
                f"{size:>5} {width:>6g} {r['seconds_per_step']:>8.3f} "
                f"{r['images_per_s']:>9.2f} {ratio:>7.2f}x",
                flush=True,
            )


# --------------------------------------------------------------------------------------------
# ddp and concurrent: whole trainings in subprocesses
# --------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pipeline.config import validate_params
    from pipeline.training.loop import train
    from pipeline.training.paths import TrainPaths

    raw, out = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])
    train(
        validate_params(raw),
        TrainPaths(
            index_csv=Path("data/processed/index.csv"), root=Path.cwd(),
            model_file=out / "model.pt", checkpoint_dir=out / "checkpoints",
            metrics_file=out / "train.json", plots_file=None,
        ),
        progress=False,
    )
    """
)


def make_processed(root: Path, n_train: int, size: int) -> None:
    """``n_train`` training and 2 validation pairs of smooth random images (content does not
    change the cost of a step)."""
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", n_train), ("val", 2)):
        for i in range(n):
            pair = f"{split}{i}"
            base = rng.uniform(0.2, 0.8, (size // 8, size // 8, 3))
            studio = np.kron(base, np.ones((8, 8, 1)))
            flash = np.clip(studio * 1.2 + rng.normal(0, 0.02, studio.shape), 0, 1)
            paths = [f"data/processed/{split}/{pair}_{k}.png" for k in ("flash", "studio")]
            write_image(root / paths[0], flash)
            write_image(root / paths[1], studio)
            rows.append([split, pair, pair, "v0", *paths])
    with (root / "data" / "processed" / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "pair_id", "subject", "variant", "flash", "studio"])
        writer.writerows(rows)


class Trainings:
    """Starts training subprocesses in one scratch repository (one registry of trainings)."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        make_processed(root, args.images, args.size)
        (root / "child.py").write_text(CHILD)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
        self.env.update({"PYTHONPATH": str(REPO), "DEEPFLASH_MLFLOW": "0", "DVC_ROOT": str(root)})
        self.count = 0

    def _params(self, threads: int | str, batch: int) -> Path:
        a = self.args
        raw = {
            "data": {"size": a.size},
            "model": {"arch": a.arch, "width": a.width},
            "train": {
                "epochs": a.epochs,
                "batch_size": batch,
                "threads": threads,
                "device": "cpu",  # 2 processes would share one GPU
            },
        }
        self.count += 1
        path = self.root / f"params{self.count}.json"
        path.write_text(json.dumps(raw))
        return path

    def start(self, threads: int | str, nproc: int = 1) -> tuple[subprocess.Popen, Path]:
        """One training (``nproc`` > 1: DDP under torchrun); returns it and its output folder."""
        params = self._params(threads, self.args.batch)
        out = self.root / f"out{self.count}"
        launcher = [sys.executable]
        if nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd = [*launcher, "child.py", str(params), str(out)]
        env = self.env | ({"MASTER_ADDR": "127.0.0.1"} if nproc > 1 else {})
        proc = subprocess.Popen(cmd, cwd=self.root, env=env, stderr=subprocess.PIPE, text=True)
        return proc, out

    def wait(self, *started: tuple[subprocess.Popen, Path]) -> list[dict[str, Any]]:
        """Wait for the trainings; their metrics/train.json."""
        results = []
        for proc, out in started:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"training in {out} failed:\n{err[-2000:]}")
            results.append(json.loads((out / "train.json").read_text()))
        return results


def run_ddp_mode(trainings: Trainings, cores: int) -> None:
    """1 process (every core) vs 2 gloo processes (threads auto: half the cores each)."""
    print(f"\n[ddp] 1 process vs 2 DDP processes (gloo), batch {trainings.args.batch} each")
    (one,) = trainings.wait(trainings.start(threads=cores))
    (two,) = trainings.wait(trainings.start(threads="auto", nproc=2))
    print(f"{'setting':<44} {'threads':>7} {'images/s':>9} {'x baseline':>10}")
    base = one["images_per_s"]
    print(f"{'1 process (baseline)':<44} {one['threads']:>7} {base:>9.2f} {1.0:>9.2f}x")
    label = "2 processes, DistributedDataParallel"
    print(
        f"{label:<44} {two['threads']:>7} {two['images_per_s']:>9.2f} {two['images_per_s'] / base:>9.2f}x"
    )


def run_concurrent_mode(trainings: Trainings, cores: int) -> None:
    """One training alone, two at once with threads auto, two at once with every core each."""
    print(f"\n[concurrent] two trainings at once on {cores} cores")
    (alone,) = trainings.wait(trainings.start(threads="auto"))
    over = trainings.wait(trainings.start(threads=cores), trainings.start(threads=cores))
    auto = trainings.wait(trainings.start(threads="auto"), trainings.start(threads="auto"))
    base = sum(r["images_per_s"] for r in over)
    print(f"{'setting':<44} {'threads':>7} {'images/s':>9} {'x baseline':>10}")
    rows = [
        ("2 at once, all cores each (baseline)", over),
        ("2 at once, threads auto", auto),
        ("1 alone, threads auto", [alone]),
    ]
    for label, results in rows:
        total = sum(r["images_per_s"] for r in results)
        threads = "+".join(str(r["threads"]) for r in results)
        each = " (" + " + ".join(f"{r['images_per_s']:.2f}" for r in results) + ")"
        print(
            f"{label:<44} {threads:>7} {total:>9.2f} {total / base:>9.2f}x{each if len(results) > 1 else ''}"
        )


def _cpu_name() -> str:
    return f"CPU ({platform.processor() or platform.machine()}, {available_cores()} cores)"


def main() -> None:
    """Run the chosen measurements and print each against its baseline."""
    params = load_params()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["step", "ddp", "concurrent"])
    parser.add_argument("--arch", default=params.model.arch)
    parser.add_argument("--batch", type=int, default=params.train.batch_size)
    parser.add_argument("--size", type=int, default=64, help="whole trainings: image side")
    parser.add_argument("--width", type=float, default=params.model.width)
    parser.add_argument("--images", type=int, default=32, help="whole trainings: train pairs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, params.data.size])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, params.model.width])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default=params.train.amp, choices=["auto", "bf16", "fp16", "off"])
    args = parser.parse_args()
    cores = available_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_train on {_cpu_name()}, load average {load:.1f} at start")
    if "step" in args.modes:
        run_step_mode(args)
    whole = [m for m in ("ddp", "concurrent") if m in args.modes]
    if whole:
        print(
            f"\nwhole trainings: {args.arch} width {args.width:g}, {args.size} px, "
            f"{args.images} train pairs, {args.epochs} epochs (CPU)"
        )
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            trainings = Trainings(Path(tmp), args)
            if "ddp" in whole:
                run_ddp_mode(trainings, cores)
            if "concurrent" in whole:
                run_concurrent_mode(trainings, cores)


if __name__ == "__main__":
    main()
