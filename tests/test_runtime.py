"""Tests of pipeline/runtime.py: device and autocast choice, CPU threads and the pid files of
live training processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.runtime import (
    DeviceError,
    TrainingProcesses,
    apply_threads,
    available_cores,
    make_autocast,
    pid_alive,
    resolve_amp,
    resolve_device,
    resolve_threads,
)


def test_autocast_is_off_on_cpu() -> None:
    cpu = torch.device("cpu")
    for choice in ("auto", "bf16", "fp16", "off"):
        assert resolve_amp(choice, cpu) is None
    assert make_autocast(cpu, None)().__class__.__name__ == "nullcontext"
    cuda = torch.device("cuda", 0)  # a device object needs no GPU
    assert resolve_amp("fp16", cuda) is torch.float16
    assert resolve_amp("bf16", cuda) is torch.bfloat16
    assert resolve_amp("off", cuda) is None


def test_resolve_device_cpu_and_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    ("choice", "cores", "concurrent", "expected"),
    [
        ("auto", 2, 1, 2),  # alone: every core
        ("auto", 2, 2, 1),  # two trainings on 2 cores: one each (not 2 + 2 spinning)
        ("auto", 16, 2, 8),
        ("auto", 16, 3, 5),  # rounded down: 15 of 16 cores busy, none oversubscribed
        ("auto", 2, 3, 1),  # more trainings than cores: at least one thread
        ("auto", 8, 0, 8),  # nobody registered yet counts as alone
        (3, 16, 4, 3),  # a number is taken as it is
        (4, 2, 1, 4),
    ],
)
def test_resolve_threads(choice: str | int, cores: int, concurrent: int, expected: int) -> None:
    assert resolve_threads(choice, cores, concurrent) == expected


@pytest.mark.parametrize("bad", [0, -1, True, "2", "all", 1.5])
def test_resolve_threads_refuses_bad_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be 'auto' or a positive integer"):
        resolve_threads(bad, 4, 1)  # type: ignore[arg-type]


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-5)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert not pid_alive(int(done.stdout))  # exited (and reaped) just now
    if Path("/proc/self/stat").exists():
        # the same pid with another start time is a later process that reused the pid
        assert not pid_alive(os.getpid(), start="1")


def test_training_processes_count_live_ones_and_drop_stale_files(tmp_path: Path) -> None:
    folder = tmp_path / "trainings"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with TrainingProcesses(folder) as processes:
            assert processes.count() == 1 and processes.live_pids() == [os.getpid()]
            # another live training (its file as TrainingProcesses writes it), a dead one, junk
            (folder / f"{sleeper.pid}.pid").write_text(f"{sleeper.pid}\n")
            dead = subprocess.run(
                [sys.executable, "-c", "import os; print(os.getpid())"],
                capture_output=True,
                text=True,
            )
            stale = folder / f"{int(dead.stdout)}.pid"
            stale.write_text(f"{int(dead.stdout)} 123\n")
            (folder / "junk.pid").write_text("not a pid")
            assert sorted(processes.live_pids()) == sorted([os.getpid(), sleeper.pid])
            assert not stale.exists()  # cleaned up
            assert processes.count() == 2
            threads = torch.get_num_threads()
            try:
                assert apply_threads("auto", processes) == max(1, available_cores() // 2)
                assert torch.get_num_threads() == max(1, available_cores() // 2)
                assert apply_threads(3, processes) == 3 == torch.get_num_threads()
            finally:
                torch.set_num_threads(threads)
        assert not processes.path.exists()  # removed on exit
    finally:
        sleeper.kill()
        sleeper.wait()
    assert TrainingProcesses(folder).count() == 1  # the sleeper is gone: the caller alone
