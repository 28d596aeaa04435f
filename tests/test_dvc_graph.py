"""DVC's picture of the code is exact: each stage's `deps` cover the project files it runs.

For every stage script, the transitive closure of its imports inside `pipeline/` is computed
from the source (imports inside functions included, since lazy imports run too) and compared
with the stage's `deps` in dvc.yaml. A file the stage runs but does not list would let
`dvc repro` report "up to date" after a code change; a listed file the stage never runs would
re-run it for nothing. Both fail here.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def module_file(root: Path, dotted: str) -> Path | None:
    """The file that defines module `dotted` under `root` (module.py or package/__init__.py)."""
    base = root.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_modules(path: Path, package: str) -> set[str]:
    """Dotted names of every `pipeline` module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts if p)
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            # `from pipeline.x import y` imports submodule y when y is one
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "pipeline" or name.startswith("pipeline.")}


def import_closure(root: Path, script: Path) -> set[Path]:
    """Every file under root/pipeline that running `script` can import, parents included."""
    todo = [(script, "")]
    seen: set[Path] = set()
    while todo:
        path, package = todo.pop()
        for dotted in _imported_modules(path, package):
            parts = dotted.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                name = ".".join(parts[:depth])
                target = module_file(root, name)
                if target is None or target in seen:
                    continue
                seen.add(target)
                pkg = name if target.name == "__init__.py" else ".".join(parts[: depth - 1])
                todo.append((target, pkg))
    return seen


def stage_deps(dvc_yaml: Path) -> dict[str, tuple[Path, list[Path]]]:
    """stage name -> (its script, its deps as paths); `${...}` data deps are left out."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[:3] == ["python", "-m", f"stages.{name}"], (name, stage["cmd"])
        script = dvc_yaml.parent / "stages" / f"{name}.py"
        deps = [dvc_yaml.parent / d for d in stage.get("deps", []) if "${" not in d]
        out[name] = (script, deps)
    return out


def coverage_problems(root: Path) -> list[str]:
    """One line per project file a stage runs but does not depend on, or depends on but never runs."""
    problems = []
    for name, (script, deps) in stage_deps(root / "dvc.yaml").items():
        if script not in deps:
            problems.append(f"{name}: its script {script.relative_to(root)} is not in deps")
        needed = import_closure(root, script)
        for path in sorted(needed):
            if not any(path == d or d in path.parents for d in deps):
                problems.append(f"{name}: runs {path.relative_to(root)} but does not depend on it")
        for dep in deps:
            if dep.is_relative_to(root / "pipeline"):
                files = [dep] if dep.suffix == ".py" else sorted(dep.rglob("*.py"))
                unused = [f for f in files if f not in needed]
                for f in unused:
                    problems.append(f"{name}: depends on {f.relative_to(root)} but never runs it")
    return problems


def test_every_stage_depends_on_exactly_the_code_it_runs() -> None:
    assert coverage_problems(ROOT) == []


def test_graph_check_fails_when_a_dep_is_removed(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(
        ROOT / "pipeline", copy / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "stages", copy / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    deps = config["stages"]["train"]["deps"]
    removed = next(d for d in deps if d.startswith("pipeline/core"))
    deps.remove(removed)
    (copy / "dvc.yaml").write_text(yaml.safe_dump(config))
    problems = coverage_problems(copy)
    assert problems and all(p.startswith("train: runs ") for p in problems)
    assert any(removed in p for p in problems)


def test_closure_follows_lazy_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "pipeline" / "sub").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "sub" / "lazy.py").write_text("X = 1\n")
    (tmp_path / "pipeline" / "top.py").write_text(
        "def f():\n    from .sub import lazy\n    return lazy.X\n"
    )
    (tmp_path / "pipeline" / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("import pipeline.top\n")
    closure = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path, script)}
    assert closure == {
        "pipeline/__init__.py",
        "pipeline/top.py",
        "pipeline/sub/__init__.py",
        "pipeline/sub/lazy.py",
    }


def test_the_model_is_a_dvc_artifact_labelled_by_its_params() -> None:
    """dvc.yaml's `artifacts:` names the train stage's model file as a `type: model` artifact
    whose labels are the params that define it (interpolated by DVC from params.yaml)."""
    from dvc.repo import Repo

    artifact = Repo(str(ROOT)).artifacts.read()["dvc.yaml"]["deepflash"]
    config = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert artifact.type == "model" and artifact.desc
    outs = [o if isinstance(o, str) else next(iter(o)) for o in config["stages"]["train"]["outs"]]
    assert artifact.path in outs
    assert artifact.labels[:2] == [
        params["model"]["arch"],
        f"encoding-{params['loss']['encoding']}",
    ]


def test_a_stage_runs_the_code_of_its_own_checkout(tmp_path: Path) -> None:
    """A stage's command imports `pipeline` from the folder DVC runs it in, not from the
    editable install's checkout: `dvc exp run --queue` runs each experiment in a temporary
    copy of the repository, and with `python stages/<name>.py` (the script's folder first on
    sys.path) every queued experiment ran the main checkout's working tree instead, edits
    made while the queue ran included."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["check_params"]
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text(
        "raise SystemExit('pipeline from ' + __file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    words = stage["cmd"].split()
    result = subprocess.run(
        [sys.executable, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert f"pipeline from {tmp_path / 'pipeline' / '__init__.py'}" in result.stderr, result.stderr[
        -2000:
    ]
