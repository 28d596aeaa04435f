"""`deepflash grid`: the paper's Tables 2 and 3 as DVC experiments (arch x encoding).

Queues each architecture end-to-end (encoding A) and with the paper's encoding C, runs them a
few at a time through DVC's queue, and prints the tables from the MLflow runs. With
``--seeds N`` every cell is a seed group of N trainings (``<name>-seed<k>``, train.seed = k),
one MLflow parent run each (pipeline/tracking/seeds.py); the table then says which
differences beat the noise of seeds and test people (pipeline/evaluation/noise.py).
"""

from __future__ import annotations

import shlex
import sys

import click


@click.group("grid")
def grid_group() -> None:
    """The grid of the paper's Tables 2 and 3: each arch end-to-end (A) and with encoding C.

    deepflash grid queue --run 2   queues arch x encoding as DVC experiments and runs them;
    deepflash grid queue --seeds 3 the same, 3 seeds per cell (nested under one MLflow run);
    deepflash grid group           nests finished seeds under their group's parent run;
    deepflash grid table           prints the Tables 2/3 layout from the MLflow runs.
    """


def _venv_env() -> dict[str, str]:
    """The environment for dvc: this interpreter's bin first on PATH, so that the stages'
    `python` is the project's venv python (also in dvc's queue workers)."""
    import os
    from pathlib import Path

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@grid_group.command("queue")
@click.option(
    "--archs", default="deepflash,hdrnet,pix2pix", show_default=True, help="Comma-separated."
)
@click.option(
    "--encodings", default="A,C", show_default=True, help="Comma-separated (A = end-to-end)."
)
@click.option(
    "--prefix",
    default="grid",
    show_default=True,
    help="Experiment names: <prefix>-<arch>-<encoding>.",
)
@click.option(
    "-S", "--set-param", "extra", multiple=True, help="More `-S key=value` for every run."
)
@click.option(
    "--seeds",
    type=int,
    default=0,
    show_default=True,
    help="N > 0: N trainings per cell (train.seed 0..N-1), named <prefix>-<arch>-<encoding>-seed<k>.",
)
@click.option("--dry-run", is_flag=True, help="Only print the commands.")
@click.option(
    "--run",
    "jobs",
    type=int,
    default=0,
    show_default=True,
    help="Then run the queue in the foreground with N parallel jobs (0: only queue; start later with `dvc queue start -j N`).",
)
def grid_queue(
    archs: str,
    encodings: str,
    prefix: str,
    extra: tuple[str, ...],
    seeds: int,
    dry_run: bool,
    jobs: int,
) -> None:
    """Queue one `dvc exp run` per arch x encoding (and optionally run the queue).

    Each experiment is named <prefix>-<arch>-<encoding> (its MLflow run name too). Queued
    experiments run in temporary copies made from git: `git add` code changes first.
    Example (the paper's Tables 2 and 3): deepflash grid queue --run 2 && deepflash grid table.
    With --seeds N and --run, the finished seeds are nested under their group's MLflow run
    (`deepflash grid group` does it for a queue run later).
    """
    import subprocess

    from pipeline.config import ENCODINGS
    from pipeline.models import available_archs  # the registry: the one list of archs
    from pipeline.tracking.seeds import seed_exp_name

    archs_known = available_archs()
    arch_list = [a.strip() for a in archs.split(",") if a.strip()]
    enc_list = [e.strip().upper() for e in encodings.split(",") if e.strip()]
    bad = [a for a in arch_list if a not in archs_known]
    bad += [e for e in enc_list if e not in ENCODINGS]
    if bad:
        click.echo(
            f"error: unknown arch/encoding {bad}; archs {archs_known}, encodings {ENCODINGS}",
            err=True,
        )
        sys.exit(2)
    if seeds < 0:
        click.echo("error: --seeds must be 0 (one run per cell) or more", err=True)
        sys.exit(2)
    commands, names, queued_by = [], set(), {}
    for arch in arch_list:
        for encoding in enc_list:
            name = f"{prefix}-{arch}-{encoding}"
            names.add(name)
            # (name, extra -S) per training: one, or one per seed of the group
            runs = [(name, [])] if seeds == 0 else [
                (seed_exp_name(name, k), ["-S", f"train.seed={k}"]) for k in range(seeds)
            ]  # fmt: skip
            for exp_name, seed_set in runs:
                cmd = ["dvc", "exp", "run", "--queue", "-n", exp_name]
                cmd += ["-S", f"model.arch={arch}", "-S", f"loss.encoding={encoding}"]
                for item in extra:
                    cmd += ["-S", item]
                commands.append(cmd + seed_set)
                queued_by[exp_name] = cmd + seed_set
    env = _venv_env()
    # Queued experiments run from a git stash of the workspace: untracked files are not in it.
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "pipeline", "stages"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if untracked:
        click.echo(
            "warning: untracked files are not part of queued experiments (git add them first): "
            + ", ".join(untracked),
            err=True,
        )
    for cmd in commands:
        click.echo(shlex.join(cmd))
        if not dry_run:
            done = subprocess.run(cmd, env=env, check=False)
            if done.returncode != 0:
                click.echo(f"error: `{shlex.join(cmd)}` failed ({done.returncode})", err=True)
                sys.exit(done.returncode)
    if jobs > 0:
        click.echo(f"dvc queue start -j {jobs}")
    failed = _run_queue_in_foreground(jobs, queued_by, env) if jobs > 0 and not dry_run else []
    if seeds > 0 and jobs > 0 and not dry_run:
        # These groups, on whatever data they ran (an -S data.raw_dir=... is not the workspace's)
        _group_seeds(None, "all", names)
    if failed:
        sys.exit(1)
    if jobs <= 0 and not dry_run:
        click.echo(
            "queued; run them with `dvc queue start -j 2` (PATH with the venv first), "
            "follow with `dvc queue status`, then `deepflash grid table`.",
            err=True,
        )


def _run_queue_in_foreground(
    jobs: int, queued_by: dict[str, list[str]], env: dict[str, str]
) -> list[str]:
    """Run the whole queue ``jobs`` at a time (pipeline/cli/queue.py: DVC's own
    `--run-all` can wait for ever on a dropped task); the names that did not succeed."""
    from pathlib import Path

    from dvc.repo import Repo

    from pipeline.cli.queue import DvcQueue, run_queue

    dvc = DvcQueue(Path(Repo.find_root()).resolve(), env)
    click.echo("watching the queue (follow one experiment with `dvc queue logs -f <name>`)")
    outcome = run_queue(jobs, queued_by, dvc, click.echo)
    bad = sorted(name for name, status in outcome.items() if status != "Success")
    for name in bad:
        logs = dvc.logs(name)
        click.echo(
            f"--- last lines of `dvc queue logs {name}`:\n" + "\n".join(logs.splitlines()[-30:])
        )
    done = len(outcome) - len(bad)
    click.echo(
        f"{done} of {len(outcome)} experiments succeeded"
        + (f"; not: {', '.join(bad)}" if bad else "")
    )
    return bad


def _group_seeds(
    experiment: str | None, fingerprint: str | None = None, groups: set[str] | None = None
) -> dict[str, str]:
    """Nest the evaluated seed runs on the data ``fingerprint`` (default: the workspace's;
    ``all``: any), of ``groups`` only when given, under their groups' parent runs."""
    from pathlib import Path

    from pipeline import tracking
    from pipeline.config import Params, load_params
    from pipeline.tracking.seeds import group_of, log_seed_groups

    params = load_params() if Path("params.yaml").is_file() else Params()
    experiment = experiment or params.mlflow.experiment
    records = tracking.evaluated_runs(experiment, fingerprint or tracking.data_fingerprint("."))
    if groups is not None:
        records = [r for r in records if group_of(r) in groups]
    parents = log_seed_groups(experiment, records)
    for group, run_id in parents.items():
        click.echo(f"seed group {group}: MLflow parent run {run_id}")
    return parents


@grid_group.command("group")
@click.option(
    "--experiment", default=None, help="MLflow experiment (default: params mlflow.experiment)."
)
@click.option(
    "--fingerprint",
    default=None,
    help="Data fingerprint of the runs (default: the workspace's data; 'all' for every run).",
)
def grid_group_seeds(experiment: str | None, fingerprint: str | None) -> None:
    """Nest the evaluated runs of each seed group (<name>-seed<k>) under one MLflow parent run
    whose metrics are the mean, std and 95 % interval over the seeds."""
    if not _group_seeds(experiment, fingerprint):
        click.echo("no seed group among the evaluated runs on these data", err=True)
        sys.exit(1)


@grid_group.command("table")
@click.option(
    "--experiment", default=None, help="MLflow experiment (default: params mlflow.experiment)."
)
@click.option(
    "--fingerprint",
    default=None,
    help="Data fingerprint of the runs (default: the workspace's data; 'all' for every run).",
)
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the markdown here.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the table as JSON.",
)
def grid_table(
    experiment: str | None, fingerprint: str | None, out_path: str | None, json_path: str | None
) -> None:
    """Print the Tables 2/3 layout (SSIM, PSNR per split; each arch, A vs C; the paper) from
    the best evaluated MLflow run per arch x encoding on the same data."""
    from pathlib import Path

    from pipeline import tracking
    from pipeline.config import Params, load_params
    from pipeline.evaluation.noise import grid_noise_rows, render_noise
    from pipeline.evaluation.report import best_runs, render_best_runs, render_tables23, tables23
    from pipeline.io import write_json
    from pipeline.tracking.records import per_image_tables
    from pipeline.tracking.seeds import best_groups

    params = load_params() if Path("params.yaml").is_file() else Params()
    experiment = experiment or params.mlflow.experiment
    fingerprint = fingerprint or tracking.data_fingerprint(".")
    records = tracking.evaluated_runs(experiment, fingerprint)
    best = best_runs(records)
    tables = {"pgt": tables23(best, "pgt"), "gt": tables23(best, "gt")}
    lines = [
        f"# Tables 2 and 3 grid ({len(records)} evaluated runs, data fingerprint {fingerprint})",
        "",
    ]
    lines += render_tables23(tables) + ["## Best runs", ""] + render_best_runs(best)
    groups = best_groups(records)
    scores = per_image_tables(r["run_id"] for runs in groups.values() for r in runs)
    configs = {
        key: [scores[r["run_id"]] for r in runs if r["run_id"] in scores]
        for key, runs in groups.items()
    }
    noise = grid_noise_rows({k: v for k, v in configs.items() if v})
    lines += render_noise(noise, "Which differences beat the noise (test people, seeds)")
    text = "\n".join(lines)
    click.echo(text)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(text)
    if json_path:
        write_json(
            json_path,
            {
                "fingerprint": fingerprint,
                "runs": len(records),
                "tables23": tables,
                "noise": noise,
                "groups": {k: [r["run_id"] for r in runs] for k, runs in groups.items()},
                "best_runs": {
                    k: {
                        "run_id": r["run_id"],
                        "run_name": r["run_name"],
                        "rank_value": r["rank_value"],
                    }
                    for k, r in best.items()
                },
            },
        )
    if not records:
        click.echo(f"no evaluated run in MLflow experiment {experiment!r} for these data", err=True)
        sys.exit(1)
