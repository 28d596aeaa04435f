"""Benchmark: training throughput (images/s) of the train stage's step, against the paper.

What is timed: exactly the per-batch work of pipeline/train.py: the batch moved to the
device, the bilateral filter and encoding C on the device (pipeline.training.loop.encode_batch), and
the model's own ``training_step`` (forward, eq. 5 loss, backward, Adam step) with autocast and
channels_last on CUDA. Data loading and validation are not timed (loading overlaps with
compute through DataLoader workers; validation is once per epoch).

Named baseline: the paper (Capece et al. 2019, Section 5): 62 epochs of 9,900 images of
512x512 in about 5 days on a Titan Xp, ~458,000 iterations: about 4.2 training images/s at
width 1.0 (the full VGG-16 encoder), batch 4. Each configuration prints its ratio to it.

Run: .venv/bin/python benchmarks/bench_train.py [--sizes 512 128] [--widths 1.0 0.25]
     [--steps 3] [--warmup 1] [--device auto|cpu|cuda] [--arch deepflash]
Default sizes: 512 and params.yaml's data.size; default widths: 1.0 and model.width.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from pipeline.config import load_params
from pipeline.core.bilateral import sigma_s_for
from pipeline.core.losses import make_loss
from pipeline.models import adam_settings, build_model
from pipeline.runtime import resolve_device
from pipeline.training.loop import MemoBlur, encode_batch, make_autocast, resolve_amp

PAPER_IMAGES_PER_S = 4.2  # 458,000 iterations x batch 4 / ~5 days on a Titan Xp (512 px)


def measure(
    arch: str,
    width: float,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    amp: str,
    encoding: str = "C",
) -> dict[str, float]:
    """Training images/s of ``steps`` timed steps (after ``warmup``) on random images."""
    params = load_params()
    torch.manual_seed(0)
    model = build_model(arch, width).to(device)
    amp_dtype = resolve_amp(amp, device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizers = model.configure_optimizers(adam_settings(arch, params.train.optimizer))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    autocast = make_autocast(device, amp_dtype)
    loss_fn = make_loss(True)
    sigma_s = sigma_s_for(size, params.bilateral.sigma_s_fraction)
    flash = torch.rand(batch, 3, size, size)
    studio = torch.rand(batch, 3, size, size)
    if device.type == "cuda":
        flash, studio = flash.pin_memory(), studio.pin_memory()

    def step() -> None:
        blur = MemoBlur(sigma_s, params.bilateral.sigma_r, params.bilateral.mode)
        _, inputs, targets = encode_batch(flash, studio, encoding, blur, device, channels_last)
        model.training_step(inputs, targets, loss_fn, optimizers, autocast, scaler)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "images_per_s": steps * batch / seconds,
        "seconds_per_step": seconds / steps,
        "parameters": parameters,
    }


def main() -> None:
    """Measure every (size, width) pair and print the ratios to the paper's 4.2 images/s."""
    params = load_params()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, params.data.size])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, params.model.width])
    parser.add_argument("--batch", type=int, default=params.train.batch_size)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default=params.train.amp, choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--arch", default=params.model.arch)
    args = parser.parse_args()

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        where = torch.cuda.get_device_name(device)
    else:
        where = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    amp_dtype = resolve_amp(args.amp, device)
    amp_name = "off" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    print(f"bench_train: {args.arch}, batch {args.batch}, encoding C, on {where}, amp {amp_name}")
    print(f"baseline: the paper, ~{PAPER_IMAGES_PER_S} images/s at 512 px, width 1.0, Titan Xp")
    print(f"{'size':>5} {'width':>6} {'params':>11} {'s/step':>8} {'images/s':>9} {'x paper':>8}")
    seen = set()
    for size in dict.fromkeys(args.sizes):
        for width in dict.fromkeys(args.widths):
            if (size, width) in seen:
                continue
            seen.add((size, width))
            try:
                r = measure(
                    args.arch, width, size, args.batch, args.steps, args.warmup, device, args.amp
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            except torch.cuda.OutOfMemoryError:
                print(f"{size:>5} {width:>6g}  out of device memory", flush=True)
                continue
            print(
                f"{size:>5} {width:>6g} {r['parameters']:>11,} {r['seconds_per_step']:>8.3f} "
                f"{r['images_per_s']:>9.2f} {r['images_per_s'] / PAPER_IMAGES_PER_S:>7.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
