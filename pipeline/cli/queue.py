"""Run DVC's experiment queue in the foreground, and notice when it stalls.

`dvc exp run --run-all -j N` can wait for ever (upstream: treeverse/dvc #10398, #10428):
a queue worker's idle monitor asks the worker, with a 1 s timeout, whether it is busy; on a
loaded machine the busy worker does not answer in time, the monitor sends it a shutdown the
worker never acts on, and exits. The worker then outlives the queue, with no monitor left to
stop it, and `--run-all` (and anything reading its output) waits on it. Seen here: two e2e
experiments both "Success", one worker alive and deaf to `dvc queue status` pings.

So the queue is started with `dvc queue start -j N` (its workers get no pipe of ours) and
watched through `dvc queue status`: workers that are gone while tasks wait are started again,
a task of ours that vanished from the queue is queued again once, and when every task is done
a worker still alive after the monitor's grace is stopped.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATES = ("Queued", "Running", "Success", "Failed", "Unknown")
PENDING = ("Queued", "Running")

# dvc queue status takes 1-3 s (it pings the workers); 5 s between polls keeps it cheap.
POLL_S = 5.0
# Polls in a row before a missing worker or task counts: a task moving from the broker to
# its process, or a worker starting, is briefly in neither place.
PATIENCE = 3
# DVC's workers stop themselves 10 s after the queue empties (dvc_task's monitor timeout);
# one still alive three times that long after the last task is the stuck one above.
LEFTOVER_GRACE_S = 30.0


@dataclass(frozen=True)
class Task:
    rev: str  # the 7-character stash rev DVC prints
    name: str
    status: str


@dataclass(frozen=True)
class QueueStatus:
    tasks: tuple[Task, ...]
    workers: int  # active + idle, as far as they answer a ping


def parse_queue_status(text: str) -> QueueStatus:
    """The tasks and worker count of `dvc queue status` output: a table under the header
    "Task  Name  Created  Status" (columns at the header words' offsets; an unnamed task's
    name is blank), then "Worker status: A active, I idle"."""
    tasks, workers, columns = [], 0, None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Worker status:"):
            workers = sum(int(w.strip(",")) for w in words if w.strip(",").isdigit())
        elif words[:1] == ["Task"] and "Name" in words and "Created" in words:
            columns = (line.index("Name"), line.index("Created"))
        elif columns and len(words) >= 3 and words[-1] in STATES:
            name = line[columns[0] : columns[1]].strip()
            tasks.append(Task(words[0], name, words[-1]))
    return QueueStatus(tuple(tasks), workers)


class DvcQueue:
    """The DVC commands the watcher needs, run in ``root`` with ``env``. ``records``: the
    folder of DVC's worker process records (default: where DVC's queue keeps them)."""

    def __init__(self, root: Path, env: dict[str, str], records: Path | None = None):
        self.root, self.env, self._records = root, env, records

    @property
    def records(self) -> Path:
        if self._records is None:
            from dvc.repo import Repo  # the queue's own folder, not a copy of its layout

            with Repo(str(self.root)) as repo:
                self._records = Path(repo.experiments.celery_queue.wdir)
        return self._records

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=False
        )

    def status(self) -> QueueStatus | None:
        """The queue now; None when `dvc queue status` failed (a busy lock, say): a failed
        look must not read as every task gone."""
        done = self._run(["dvc", "queue", "status"])
        if done.returncode != 0 or "Worker status:" not in (done.stdout or ""):
            return None
        return parse_queue_status(done.stdout)

    def start(self, jobs: int) -> None:
        # The workers are daemons forked from this command: give them no pipe of ours, or
        # whoever reads our output waits for them.
        # A file, not a pipe, for its errors: a pipe stays open until the workers exit.
        cmd = ["dvc", "queue", "start", "-j", str(jobs)]
        with tempfile.TemporaryFile("w+") as errors:
            done = subprocess.run(
                cmd,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                check=False,
            )
            errors.seek(0)
            if done.returncode != 0:
                raise RuntimeError(f"`{shlex.join(cmd)}` failed: {errors.read().strip()}")

    def queue(self, cmd: list[str]) -> None:
        done = self._run(cmd)
        if done.returncode != 0:
            raise RuntimeError(f"`{shlex.join(cmd)}` failed: {done.stderr.strip()}")

    def logs(self, name: str) -> str:
        return self._run(["dvc", "queue", "logs", name]).stdout or ""

    def worker_pids(self) -> list[int]:
        """Live queue-worker processes of this repository (DVC's own process records)."""
        import psutil

        pids = []
        for info in sorted(self.records.glob("dvc-exp-worker-*.json")):
            try:
                pid = int(json.loads(info.read_text())["pid"])
                process = psutil.Process(pid)
                if "queue-worker" in process.cmdline() and process.is_running():
                    pids.append(pid)
            except (OSError, ValueError, KeyError, psutil.Error):
                continue  # gone, or a record being rewritten: not a live worker
        return pids

    def stop(self, pid: int) -> None:
        import psutil

        try:
            process = psutil.Process(pid)
            process.terminate()
            process.wait(timeout=10)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.Error:
            pass


def run_queue(
    jobs: int,
    own: dict[str, list[str]],
    dvc: DvcQueue,
    echo: Callable[[str], None],
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Start ``jobs`` workers and watch until nothing that was pending is queued or running.

    ``own`` maps the names this call queued to their `dvc exp run --queue` command (queued
    again, once, if DVC drops the task). Returns name -> final status ("Success", "Failed",
    or "Lost" for a task dropped and not queued again) of every task watched.
    """
    first = None
    while first is None:
        if (first := dvc.status()) is None:
            sleep(poll_s)
    watched = {t.rev: t.name for t in first.tasks if t.status in PENDING}
    dvc.start(jobs)
    outcome: dict[str, str] = {}
    requeued: set[str] = set()
    missing: dict[str, int] = {}
    shown: dict[str, str] = {}
    no_workers = 0
    while watched:
        sleep(poll_s)
        status = dvc.status()
        if status is None:
            continue
        by_rev = {t.rev: t for t in status.tasks}
        for task in status.tasks:  # ours, queued again, are under a new rev
            if task.status in PENDING and task.name in requeued and task.rev not in watched:
                watched[task.rev] = task.name
        for rev, name in list(watched.items()):
            label = name or rev
            task = by_rev.get(rev)
            if task is None:
                missing[rev] = missing.get(rev, 0) + 1
                if missing[rev] >= PATIENCE:
                    del watched[rev]
                    if name in own and name not in requeued:
                        requeued.add(name)
                        echo(f"{label}: dropped by DVC's queue; queueing it again")
                        try:
                            dvc.queue(own[name])
                        except RuntimeError as error:
                            echo(f"{label}: {error}")
                            outcome[label] = "Lost"
                    else:
                        echo(f"{label}: dropped by DVC's queue")
                        outcome[label] = "Lost"
                continue
            missing.pop(rev, None)
            if shown.get(rev) != task.status:
                shown[rev] = task.status
                echo(f"{label}: {task.status}")
            if task.status not in PENDING:
                outcome[label] = task.status
                del watched[rev]
        states = {by_rev[r].status for r in watched if r in by_rev}
        stalled = "Queued" in states and "Running" not in states and status.workers == 0
        no_workers = no_workers + 1 if stalled else 0
        if no_workers >= PATIENCE:
            echo("no queue worker is left while tasks wait; starting the workers again")
            dvc.start(jobs)
            no_workers = 0
    _stop_leftover_workers(dvc, echo, poll_s, sleep)
    return outcome


def _stop_leftover_workers(
    dvc: DvcQueue, echo: Callable[[str], None], poll_s: float, sleep: Callable[[float], None]
) -> None:
    waited = 0.0
    while (pids := dvc.worker_pids()) and waited < LEFTOVER_GRACE_S:
        sleep(poll_s)
        waited += poll_s
    now = dvc.status()
    if pids and (now is None or any(t.status in PENDING for t in now.tasks)):
        return  # queued since we started (or unknown): the workers may have work again
    for pid in pids:
        echo(f"queue worker {pid} outlived the queue (a DVC bug); stopping it")
        dvc.stop(pid)
