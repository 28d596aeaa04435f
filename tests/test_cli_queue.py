"""Tests of pipeline/cli/queue.py: `dvc queue status` parsed, and the watcher that runs the
queue in the foreground against a scripted queue: tasks finishing, a task DVC drops (queued
again once), workers gone while tasks wait (started again), a worker that outlives the queue
(stopped), a failure reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.cli.queue import (
    LEFTOVER_GRACE_S,
    PATIENCE,
    DvcQueue,
    QueueStatus,
    Task,
    parse_queue_status,
    run_queue,
)

# What dvc 3.67 prints (the e2e queue run; the third row is an unnamed task of an older day).
STATUS = """\
Task     Name          Created       Status
44b6e20  enc-b         06:25 PM      Running
b22d933  e2e-hdrnet-C  06:25 PM      Queued
0c1d2e3                Dec 03, 2026  Success

Worker status: 1 active, 1 idle
"""


def test_queue_status_is_parsed_by_the_header_columns() -> None:
    status = parse_queue_status(STATUS)
    assert status.tasks == (
        Task("44b6e20", "enc-b", "Running"),
        Task("b22d933", "e2e-hdrnet-C", "Queued"),
        Task("0c1d2e3", "", "Success"),
    )
    assert status.workers == 2
    empty = parse_queue_status(
        "No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle"
    )
    assert empty == QueueStatus((), 0)


class ScriptedQueue:
    """A queue whose status at poll k is ``script[k]`` (the last one repeats); it records
    the starts, re-queues and stopped workers."""

    def __init__(self, script: list[tuple[list[Task], int] | None], leftover: list[int] = ()):
        self.script, self.polls = script, 0
        self.starts: list[int] = []
        self.queued: list[list[str]] = []
        self.leftover, self.stopped = list(leftover), []

    def status(self) -> QueueStatus | None:
        step = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return None if step is None else QueueStatus(tuple(step[0]), step[1])

    def start(self, jobs: int) -> None:
        self.starts.append(jobs)

    def queue(self, cmd: list[str]) -> None:
        self.queued.append(cmd)

    def worker_pids(self) -> list[int]:
        return [pid for pid in self.leftover if pid not in self.stopped]

    def stop(self, pid: int) -> None:
        self.stopped.append(pid)


def _watch(queue: ScriptedQueue, own: dict[str, list[str]] | None = None):
    said: list[str] = []
    slept: list[float] = []
    outcome = run_queue(2, own or {}, queue, said.append, poll_s=5.0, sleep=slept.append)
    return outcome, said, slept


def test_tasks_run_to_the_end_and_a_worker_left_behind_is_stopped() -> None:
    a, b = Task("aaaaaaa", "enc-b", "Queued"), Task("bbbbbbb", "e2e-hdrnet-C", "Queued")
    old = Task("0000000", "older", "Success")  # finished before: not watched
    queue = ScriptedQueue(
        [
            ([a, b, old], 0),  # before the start
            ([Task(a.rev, a.name, "Running"), Task(b.rev, b.name, "Running"), old], 2),
            ([Task(a.rev, a.name, "Success"), Task(b.rev, b.name, "Running"), old], 1),
            ([Task(a.rev, a.name, "Success"), Task(b.rev, b.name, "Success"), old], 0),
        ],
        leftover=[4242],  # alive for ever, deaf to pings ("0 active, 0 idle")
    )
    outcome, said, slept = _watch(queue)
    assert outcome == {"enc-b": "Success", "e2e-hdrnet-C": "Success"}
    assert queue.starts == [2] and queue.queued == []
    assert "enc-b: Running" in said and "e2e-hdrnet-C: Success" in said
    assert queue.stopped == [4242]
    assert any("4242 outlived the queue" in line for line in said)
    assert sum(slept) == 3 * 5.0 + LEFTOVER_GRACE_S  # 3 polls, then the grace


def test_a_worker_that_stops_by_itself_is_left_alone() -> None:
    done = Task("aaaaaaa", "x", "Success")

    class Stopping(ScriptedQueue):
        asked = 0

        def worker_pids(self) -> list[int]:  # its monitor stops it by the 3rd look
            self.asked += 1
            return [7] if self.asked < 3 else []

    queue = Stopping([([Task("aaaaaaa", "x", "Queued")], 0), ([done], 1)])
    outcome, _, _ = _watch(queue)
    assert outcome == {"x": "Success"} and queue.stopped == []


def test_a_dropped_task_of_ours_is_queued_again_once_and_a_failure_is_reported() -> None:
    mine = ["dvc", "exp", "run", "--queue", "-n", "mine"]
    first = Task("aaaaaaa", "mine", "Queued")
    theirs = Task("bbbbbbb", "theirs", "Running")
    # `dvc queue status` failing (None) is no news; then "mine" vanishes for PATIENCE polls
    gone = [None] * (PATIENCE + 1) + [([theirs], 1)] * PATIENCE
    again = Task("ccccccc", "mine", "Queued")
    queue = ScriptedQueue(
        [
            ([first, theirs], 1),
            *gone,
            ([again, theirs], 1),
            ([Task(again.rev, "mine", "Success"), Task(theirs.rev, "theirs", "Failed")], 0),
        ]
    )
    outcome, said, _ = _watch(queue, {"mine": mine})
    assert queue.queued == [mine]
    assert outcome == {"mine": "Success", "theirs": "Failed"}
    assert "mine: dropped by DVC's queue; queueing it again" in said


def test_a_task_dropped_twice_or_not_ours_is_lost() -> None:
    queue = ScriptedQueue([([Task("aaaaaaa", "theirs", "Queued")], 0), ([], 0)])
    outcome, said, _ = _watch(queue)
    assert outcome == {"theirs": "Lost"} and queue.queued == []
    assert "theirs: dropped by DVC's queue" in said


def test_workers_gone_while_tasks_wait_are_started_again() -> None:
    waiting = Task("aaaaaaa", "x", "Queued")
    queue = ScriptedQueue(
        [([waiting], 0)] + [([waiting], 0)] * PATIENCE + [([Task("aaaaaaa", "x", "Success")], 0)]
    )
    outcome, said, _ = _watch(queue)
    assert outcome == {"x": "Success"}
    assert queue.starts == [2, 2]
    assert any("starting the workers again" in line for line in said)


def test_worker_pids_are_dvc_s_live_queue_workers_and_stop_ends_one(tmp_path: Path) -> None:
    records = tmp_path / ".dvc/tmp/exps/celery"
    records.mkdir(parents=True)
    # A stand-in worker: its command line names queue-worker, as DVC's does.
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "exp", "queue-worker", "n1"]
    )
    try:
        (records / "dvc-exp-worker-1.json").write_text(json.dumps({"pid": worker.pid}))
        # this test's own process: alive, but not a queue worker
        (records / "dvc-exp-worker-2.json").write_text(json.dumps({"pid": os.getpid()}))
        (records / "dvc-exp-worker-3.json").write_text("{")  # being rewritten
        queue = DvcQueue(tmp_path, dict(os.environ), records=records)
        assert queue.worker_pids() == [worker.pid]
        queue.stop(worker.pid)
        assert worker.wait(timeout=10) is not None
        assert queue.worker_pids() == []
    finally:
        worker.kill()


def test_worker_records_are_where_dvc_s_queue_keeps_them(tmp_path: Path) -> None:
    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # experiments need git
    Repo.init(str(tmp_path)).close()
    expected = tmp_path / ".dvc" / "tmp" / "exps" / "celery"  # dvc 3's layout, asked of DVC
    assert DvcQueue(tmp_path, dict(os.environ)).records == expected
