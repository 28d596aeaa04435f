"""Seed groups: N trainings of one configuration that differ only in ``train.seed``, as DVC
experiments ``<group>-seed<k>`` (``deepflash grid queue --seeds N``) and, in MLflow, one
parent run with the seeds nested under it (MLflow's nested runs: each child's
``mlflow.parentRunId`` tag names the parent).

The parent carries the group's numbers under the children's metric names: the mean over the
seeds as ``<name>``, beside ``<name>.std`` (n - 1), ``<name>.ci_low`` / ``<name>.ci_high`` (the
95 % t interval of the mean; :func:`pipeline.evaluation.stats.seed_summary`), and ``seeds``, so
the compare view charts parents beside single runs. The parent is no evaluated run (no
``deepflash.evaluated`` tag): rankings and reports read the seeds themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.evaluation.stats import seed_summary
from pipeline.tracking.lifecycle import RunHandle
from pipeline.tracking.store import call_with_retry, client_for, enabled, store_lock, tracking_uri
from pipeline.tracking.tags import (
    ARCH_TAG,
    DATASET_TAG,
    ENCODING_TAG,
    EXP_NAME_TAG,
    FINGERPRINT_TAG,
    NOTE_TAG,
    PARENT_RUN_TAG,
    ROLE_TAG,
    SEED_GROUP_TAG,
    SEEDS_TAG,
)

GROUP_ROLE = "seed-group"
_SEED_NAME = re.compile(r"^(?P<group>.+)-seed(?P<seed>\d+)$")
# Tags a parent takes from its seeds (all seeds of a group share them).
_SHARED_TAGS = (ARCH_TAG, ENCODING_TAG, DATASET_TAG, FINGERPRINT_TAG)


def seed_exp_name(group: str, seed: int) -> str:
    """The DVC experiment name of ``seed`` of ``group``."""
    return f"{group}-seed{seed}"


def split_seed_name(exp_name: str | None) -> tuple[str, int] | None:
    """``(group, seed)`` of a name made by :func:`seed_exp_name`, else None."""
    found = _SEED_NAME.match(exp_name or "")
    return (found["group"], int(found["seed"])) if found else None


def group_of(record: Mapping[str, Any]) -> str:
    """A run record's configuration: its seed group, else its own DVC experiment (or run)."""
    split = split_seed_name(record.get("exp_name"))
    if split is not None:
        return split[0]
    return str(record.get("exp_name") or record.get("run_name") or record.get("run_id"))


def group_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Run records by :func:`group_of` (a run without a seed suffix: a group of one)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(group_of(record), []).append(dict(record))
    return groups


def best_groups(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per ``"<arch>/<encoding>"`` the runs of its best configuration: the group whose seeds'
    mean :func:`pipeline.evaluation.report.rank_value` is highest (a mean, not the luckiest
    seed, so that a group of 3 does not beat a single run by its best draw)."""
    from pipeline.evaluation.report import rank_value

    best: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for runs in group_records(records).values():
        values = [v for v in (rank_value(r) for r in runs) if v is not None]
        arch, encoding = runs[0].get("arch"), runs[0].get("encoding")
        if not values or not arch or not encoding:
            continue
        key, mean = f"{arch}/{encoding}", sum(values) / len(values)
        if key not in best or mean > best[key][0]:
            best[key] = (mean, runs)
    return {key: runs for key, (_, runs) in sorted(best.items())}


def group_metrics(children: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """A parent's metrics from its seeds' records: per metric every seed has, the mean, std,
    95 % interval (std and interval with two seeds or more), and ``seeds``."""
    names = set.intersection(*(set(c["metrics"]) for c in children)) if children else set()
    out: dict[str, float] = {"seeds": float(len(children))}
    for name in sorted(names):
        summary = seed_summary([c["metrics"][name] for c in children])
        out[name] = float(summary["mean"])
        for key, suffix in (("std", "std"), ("low", "ci_low"), ("high", "ci_high")):
            if summary[key] is not None:
                out[f"{name}.{suffix}"] = float(summary[key])
    return out


def log_seed_group(
    experiment_id: str,
    group: str,
    children: Sequence[Mapping[str, Any]],
    root: str | os.PathLike | None = None,
) -> str | None:
    """Create (or update) the parent run of ``group`` in ``experiment_id``, log
    :func:`group_metrics` of ``children`` (run records) into it and nest every child under it.
    Returns the parent's run id (None when tracking is off or there is no child)."""
    if not enabled() or not children:
        return None
    uri = tracking_uri(root)
    client = client_for(uri)
    key = {SEED_GROUP_TAG: group, ROLE_TAG: GROUP_ROLE}
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key.items())
    with store_lock(uri):  # two processes grouping at once: one parent, not two
        found = call_with_retry(
            client.search_runs, [experiment_id], filter_string=query, max_results=1
        )
        if found:
            parent_id = found[0].info.run_id
        else:
            first = call_with_retry(client.get_run, children[0]["run_id"]).data.tags
            tags = {k: first[k] for k in _SHARED_TAGS if k in first}
            tags.update(key)
            tags[EXP_NAME_TAG] = group
            tags[NOTE_TAG] = (
                f"**Seed group `{group}`**: {len(children)} trainings of one configuration "
                "(train.seed differs), nested below; metrics: the mean over the seeds, with "
                "`.std`, `.ci_low` and `.ci_high` (95 % t interval of the mean)."
            )
            run = call_with_retry(client.create_run, experiment_id, run_name=group, tags=tags)
            parent_id = run.info.run_id
    parent = RunHandle(parent_id, experiment_id, uri, client)
    parent.log_metrics(group_metrics(children))
    seeds = sorted(s[1] for s in map(split_seed_name, (c.get("exp_name") for c in children)) if s)
    # A tag, not a param: a group grows when more seeds finish, and params are immutable.
    parent.set_tags({SEEDS_TAG: ",".join(map(str, seeds))})
    for child in children:
        call_with_retry(client.set_tag, child["run_id"], PARENT_RUN_TAG, parent_id)
        call_with_retry(client.set_tag, child["run_id"], SEED_GROUP_TAG, group)
    parent.end("FINISHED")
    return parent_id


def log_seed_groups(
    experiment: str, records: Iterable[Mapping[str, Any]], root: str | os.PathLike | None = None
) -> dict[str, str]:
    """:func:`log_seed_group` for every seed group among ``records`` (evaluated runs of
    ``experiment``; runs without a seed suffix are left alone); returns group -> parent id."""
    if not enabled():
        return {}
    client = client_for(tracking_uri(root))
    found = call_with_retry(client.get_experiment_by_name, experiment)
    if found is None:
        return {}
    out: dict[str, str] = {}
    for group, children in group_records(records).items():
        if all(split_seed_name(c.get("exp_name")) is not None for c in children):
            parent = log_seed_group(found.experiment_id, group, children, root)
            if parent is not None:
                out[group] = parent
    return out


__all__ = [
    "GROUP_ROLE",
    "best_groups",
    "group_metrics",
    "group_of",
    "group_records",
    "log_seed_group",
    "log_seed_groups",
    "seed_exp_name",
    "split_seed_name",
]
