"""Tests of pipeline/training/distributed.py: DistributedDataParallel training with gloo.

One torchrun launch of 2 CPU processes does everything (process start-up dominates):

- the CPU SyncBatchNorm on each rank's half of a batch gives single-process BatchNorm's
  output, input gradients, parameter gradients (summed over ranks) and running statistics;
- for every arch, 2 processes with batch b each end a few steps with the same weights (to float
  precision) as 1 process with batch 2b over the same images, and with the same losses; both
  ranks end bit-identical; only rank 0 writes files.

Two "nodes" (two torchrun launchers, 1 process each, torchrun's c10d rendezvous on 127.0.0.1)
train deepflash like one process of the doubled batch too.

pix2pix trains at 32 px here: its depth then has no dropout level (dropout draws a different
random mask per rank, which no equivalence can survive).
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.trainingdata import (
    losses,
    mini_repo,
    out_paths,
    raw_params,
    same_state,
    state_of,
    subprocess_env,
    torchrun,
)
from torch import nn

from pipeline.config import validate_params
from pipeline.training.checkpoint import CHECKPOINT_NAME
from pipeline.training.distributed import CpuSyncBatchNorm, plain_batchnorm, sync_batchnorm
from pipeline.training.loop import train

ARCHS = ("deepflash", "hdrnet", "pix2pix")
SIZE = 32
B = 2  # per rank; the single process runs 2 * B
# Adam's eps raised from 1e-8: with 1e-8 the first updates are about lr * sign(g), so a weight
# whose gradient is float noise around zero (common at a GAN's start) moves by +-lr on the
# sign of that noise, in one process as in two. Measured with 4 steps at 1e-8: pix2pix's
# weights differ by up to 9 % of their movement, at 1e-4 by 1e-5 (BatchNorm per rank: 140 %).
EPS = 1.0e-4


def _raw(arch: str, batch: int) -> dict[str, Any]:
    # lr 1e-3 for every arch: 4 steps move the weights far more than the tolerance.
    return raw_params(
        data={"size": SIZE},
        model={"arch": arch, "width": 0.0625},
        train={
            "batch_size": batch,
            "max_images_per_epoch": 8,
            "optimizer": {arch: {"lr": 1.0e-3, "eps": EPS}},
        },
    )


WORKER = textwrap.dedent(
    """
    import json
    import os
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from pipeline.config import validate_params
    from pipeline.training.distributed import CpuSyncBatchNorm
    from pipeline.training.loop import train
    from pipeline.training.paths import TrainPaths

    dist.init_process_group("gloo")  # train() joins it and leaves it open between runs
    rank = dist.get_rank()

    # CpuSyncBatchNorm on this rank's half of the batch
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    weights = torch.randn(4, 3, 5, 5)
    bn = CpuSyncBatchNorm(3, momentum=0.5)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    part = x[2 * rank : 2 * rank + 2].clone().requires_grad_()
    y = bn(part)
    (y * weights[2 * rank : 2 * rank + 2]).sum().backward()
    torch.save(
        {"y": y.detach(), "x_grad": part.grad, "w_grad": bn.weight.grad, "b_grad": bn.bias.grad,
         "mean": bn.running_mean, "var": bn.running_var},
        f"syncbn_rank{rank}.pt",
    )

    for arch, raw in json.loads(Path("runs.json").read_text()).items():
        out = Path(f"out_{arch}_rank{rank}")  # only rank 0 may create its folder
        result = train(
            validate_params(raw),
            TrainPaths(
                root=Path.cwd(),
                model_file=out / "model.pt",
                checkpoint_dir=out / "checkpoints",
                metrics_file=out / "train.json",
                plots_file=out / "train.csv",
            ),
            progress=False,
        )
        assert all(type(m) is not CpuSyncBatchNorm for m in result.model.modules())
        torch.save(
            {"state": result.model.state_dict(), "history": result.history},
            f"{arch}_rank{rank}_of_{dist.get_world_size()}.pt",
        )
    dist.destroy_process_group()
    """
)


@pytest.fixture(scope="module")
def ddp_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mini repo after the 2-process torchrun of :data:`WORKER`."""
    repo = mini_repo(tmp_path_factory.mktemp("ddp"), size=SIZE)
    (repo / "runs.json").write_text(json.dumps({arch: _raw(arch, B) for arch in ARCHS}))
    (repo / "worker.py").write_text(WORKER)
    torchrun(repo, "worker.py", nproc=2)
    return repo


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One thread, as the torchrun processes (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cpu_sync_batchnorm_matches_batchnorm_over_the_whole_batch(ddp_repo: Path) -> None:
    ranks = [torch.load(ddp_repo / f"syncbn_rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 5, 5) * 2 + 1).requires_grad_()
    weights = torch.randn(4, 3, 5, 5)
    bn = nn.BatchNorm2d(3, momentum=0.5)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = bn(x)
    (y * weights).sum().backward()
    close = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, **close)
    torch.testing.assert_close(ranks[0]["w_grad"] + ranks[1]["w_grad"], bn.weight.grad, **close)
    torch.testing.assert_close(ranks[0]["b_grad"] + ranks[1]["b_grad"], bn.bias.grad, **close)
    for r in ranks:  # unbiased variance of the 100 values per channel, as BatchNorm2d
        torch.testing.assert_close(r["mean"], bn.running_mean, **close)
        torch.testing.assert_close(r["var"], bn.running_var, **close)


def test_sync_batchnorm_conversion_shares_parameters_and_reverts() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()))
    reference = copy.deepcopy(model)
    bn = model[1][0]
    sync_batchnorm(model, torch.device("cpu"))
    assert type(model[1][0]) is CpuSyncBatchNorm
    assert model[1][0].weight is bn.weight and model[1][0].running_var is bn.running_var
    x = torch.rand(2, 3, 6, 6)
    # no process group here: BatchNorm2d's output and running statistics
    torch.testing.assert_close(model(x), reference(x))
    torch.testing.assert_close(bn.running_var, reference[1][0].running_var)
    plain_batchnorm(model)
    assert type(model[1][0]) is nn.BatchNorm2d and model[1][0].weight is bn.weight
    assert model.state_dict().keys() == reference.state_dict().keys()


@pytest.mark.parametrize("arch", ARCHS)
def test_two_processes_of_batch_b_train_like_one_of_batch_2b(
    ddp_repo: Path, arch: str, tmp_path: Path
) -> None:
    ranks = [torch.load(ddp_repo / f"{arch}_rank{r}_of_2.pt", weights_only=True) for r in (0, 1)]
    # both ranks end bit-identical, with the same history
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    assert losses(ranks[0]["history"]) == losses(ranks[1]["history"])
    # 8 training images per epoch: 2 steps of 2 images on each rank
    assert [h["images"] for h in ranks[0]["history"]] == [8, 8]

    single = train(
        validate_params(_raw(arch, 2 * B)), out_paths(ddp_repo, tmp_path), progress=False
    )
    initial = _initial_state(arch)
    for key, ref in single.model.state_dict().items():
        got = ranks[0]["state"][key]
        if not ref.is_floating_point():
            assert torch.equal(got, ref), key  # num_batches_tracked: same number of steps
            continue
        # to float precision: 1e-2 of how far 4 steps moved the tensor. Measured: <= 3e-5 on
        # a quiet box, 1.03e-3 for a small bias under CI load (Adam's m / sqrt(v) magnifies
        # reduction-order noise in near-zero gradients); with per-rank BatchNorm statistics
        # instead of SyncBatchNorm: 1.4, so the bound still catches that 140 times over.
        moved = (ref - initial[key]).norm()
        assert (got - ref).norm() <= 1e-7 + 1e-2 * moved, key
    for mine, theirs in zip(losses(ranks[0]["history"]), losses(single.history), strict=True):
        assert mine == pytest.approx(theirs, rel=1e-4)

    # only rank 0 wrote, and its model file holds the trained weights
    assert not (ddp_repo / f"out_{arch}_rank1").exists()
    written = state_of(ddp_repo / f"out_{arch}_rank0" / "model.pt")
    assert all(torch.equal(written[k], ranks[0]["state"][k]) for k in written)
    metrics = json.loads((ddp_repo / f"out_{arch}_rank0" / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 2
    assert (ddp_repo / f"out_{arch}_rank0" / "checkpoints" / CHECKPOINT_NAME).is_file()


def _initial_state(arch: str) -> dict[str, torch.Tensor]:
    from pipeline.training.setup import build_seeded_model

    params = validate_params(_raw(arch, 2 * B))
    return build_seeded_model(params, torch.device("cpu"), False).state_dict()


# --------------------------------------------------------------------------------------------
# Two "nodes": two torchrun launchers joined by torchrun's own c10d rendezvous on loopback
# --------------------------------------------------------------------------------------------

NODE_WORKER = textwrap.dedent(
    """
    import json
    import os
    from pathlib import Path

    import torch

    from pipeline.config import validate_params
    from pipeline.training.loop import train
    from pipeline.training.paths import TrainPaths

    rank = int(os.environ["RANK"])  # train() joins the process group torchrun describes
    node = os.environ["GROUP_RANK"]  # the launcher (node) this process belongs to
    out = Path(f"node_out_rank{rank}")
    result = train(
        validate_params(json.loads(Path("node_run.json").read_text())),
        TrainPaths(
            root=Path.cwd(),
            model_file=out / "model.pt",
            checkpoint_dir=out / "checkpoints",
            metrics_file=out / "train.json",
            plots_file=out / "train.csv",
        ),
        progress=False,
    )
    torch.save(
        {"state": result.model.state_dict(), "history": result.history, "node": node},
        f"node_rank{rank}.pt",
    )
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_torchrun_nodes_on_loopback_train_like_one_process_of_the_doubled_batch(
    tmp_path: Path,
) -> None:
    """`torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d` twice, as two machines
    would run it (README "Several machines"), here both on 127.0.0.1: the 2 ranks of batch b
    end with the weights of 1 process of batch 2b, and only global rank 0 writes."""
    repo = mini_repo(tmp_path / "repo", size=SIZE)
    (repo / "node_run.json").write_text(json.dumps(_raw("deepflash", B)))
    (repo / "node_worker.py").write_text(NODE_WORKER)
    endpoint = f"127.0.0.1:{_free_port()}"
    launchers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run"),
                *("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node)),
                *("--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "t2n"),
                "node_worker.py",
            ],
            cwd=repo,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    for launcher in launchers:
        output, _ = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, output[-3000:]
    ranks = [torch.load(repo / f"node_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert {r["node"] for r in ranks} == {"0", "1"}  # one rank per launcher
    assert same_state(ranks[0]["state"], ranks[1]["state"])
    assert [h["images"] for h in ranks[0]["history"]] == [8, 8]

    single = train(
        validate_params(_raw("deepflash", 2 * B)), out_paths(repo, tmp_path), progress=False
    )
    initial = _initial_state("deepflash")
    for key, ref in single.model.state_dict().items():
        got = ranks[0]["state"][key]
        if not ref.is_floating_point():
            assert torch.equal(got, ref), key
            continue
        moved = (ref - initial[key]).norm()  # the bound of the one-node test above
        assert (got - ref).norm() <= 1e-7 + 1e-2 * moved, key
    for mine, theirs in zip(losses(ranks[0]["history"]), losses(single.history), strict=True):
        assert mine == pytest.approx(theirs, rel=1e-4)
    assert not (repo / "node_out_rank1").exists()
    metrics = json.loads((repo / "node_out_rank0" / "train.json").read_text())
    assert metrics["world_size"] == 2
