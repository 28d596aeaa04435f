"""Where and how tensors run: device, mixed precision, CPU threads (one place for every stage
and the CLI).

Threads: torch's default is one intra-op thread per core in every process. Two trainings at
once on the same cores then run twice as many spinning OpenMP threads as there are cores, and
each slows down far more than twofold. ``train.threads: auto`` gives each training process its
share, ``cores // live training processes``; the processes find each other through their
pid files (:class:`TrainingProcesses`) in the main repository, which ``dvc exp run``,
queued experiments (``dvc queue start -j 2``, ``deepflash grid queue --run 2``) and plain
``python -m stages.train`` runs all share: DVC sets ``$DVC_ROOT`` to the main repository even
for an experiment that runs in a temporary copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.io import write_text

log = logging.getLogger(__name__)

# Under the main repository root (pipeline.tracking.store.repo_root); git-ignored.
PROCESSES_DIR = Path(".deepflash") / "trainings"


class DeviceError(RuntimeError):
    """The device asked for does not exist on this machine; the message says what to use."""


def resolve_device(choice: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present (GPU ``local_rank`` of this node), else the CPU.

    ``cpu``, ``cuda`` and ``cuda:N`` as given; CUDA asked for on a machine without it, or an
    unknown name, raises :class:`DeviceError`.
    """
    if isinstance(choice, torch.device):
        return choice
    if choice == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if choice in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {choice!r}: CUDA is not available here (use cpu or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {choice!r}: CUDA is not available here (use cpu or auto)")
        return torch.device(choice)
    if choice == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {choice!r} (auto, cpu, cuda or cuda:N)")


def resolve_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None on CPU (full precision) and for ``off``; bf16 when supported."""
    if device.type != "cuda" or choice == "off":
        return None
    if choice == "fp16":
        return torch.float16
    if choice == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def make_autocast(device: torch.device, dtype: torch.dtype | None) -> Callable[[], Any]:
    """Zero-argument factory of the autocast context the steps run under."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# CPU threads
# --------------------------------------------------------------------------------------------


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(choice: str | int, cores: int, concurrent: int) -> int:
    """Intra-op threads of one training process: ``choice`` when a number, for ``auto`` its
    share of ``cores`` among ``concurrent`` training processes (at least 1)."""
    if isinstance(choice, bool) or not (choice == "auto" or isinstance(choice, int)):
        raise ValueError(f"threads must be 'auto' or a positive integer, got {choice!r}")
    if choice != "auto":
        if choice < 1:
            raise ValueError(f"threads must be 'auto' or a positive integer, got {choice!r}")
        return choice
    return max(1, cores // max(1, concurrent))


def _start_time(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat: start time in clock ticks since boot; tells a live process
    # from a later one that got the same pid. None where /proc does not exist.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True when process ``pid`` exists (and, when ``start`` is given and /proc readable, is
    the one that started then rather than a later process that reuses the pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if start is not None:
        now = _start_time(pid)
        if now is not None and now != start:
            return False
    return True


class TrainingProcesses:
    """Pid files of the training processes running on this machine for one repository.

    ``with TrainingProcesses(folder):`` adds this process (``<pid>.pid`` holding the pid and
    its start time) and removes the file on exit; :meth:`count` is the number of live
    processes with a file. Files of processes that died without cleaning up (SIGKILL) are
    ignored and removed.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.pid = os.getpid()
        self.path = self.folder / f"{self.pid}.pid"

    def __enter__(self) -> TrainingProcesses:
        start = _start_time(self.pid) or ""
        write_text(self.path, f"{self.pid} {start}\n")
        self.live_pids()  # sweeps the files of dead processes, whatever train.threads says
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)

    def live_pids(self) -> list[int]:
        """Pids of the live processes with a file (this one included inside ``with``)."""
        live = []
        for path in sorted(self.folder.glob("*.pid")):
            try:
                fields = path.read_text().split()
                pid, start = int(fields[0]), (fields[1] if len(fields) > 1 else None)
            except (OSError, ValueError, IndexError):
                continue  # vanished or foreign file
            if pid_alive(pid, start):
                live.append(pid)
            else:
                path.unlink(missing_ok=True)  # stale: its process died without cleaning up
        return live

    def count(self) -> int:
        """Number of live processes with a file (at least 1: the caller is one)."""
        return max(1, len(self.live_pids()))


def apply_threads(choice: str | int, processes: TrainingProcesses | None) -> int:
    """Set torch's intra-op threads for ``choice`` (``auto``: this process's share of the
    cores among the live ones of ``processes``); returns the number set."""
    concurrent = processes.count() if processes is not None and choice == "auto" else 1
    threads = resolve_threads(choice, available_cores(), concurrent)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def cap_interop_threads(threads: int) -> None:
    """Cap torch's inter-op pool at ``threads`` (its default is every core, in every process);
    torch allows this once per process, before any parallel work, so later calls (a second
    training in the same process) keep the first setting."""
    try:
        torch.set_num_interop_threads(max(1, threads))
    except RuntimeError:
        log.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())
