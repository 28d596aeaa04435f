"""Comments and docstrings point at files that exist.

A docstring that still names the old file of a module that moved (as the tracking modules
did when they became a package) sends the next reader to a file that is not there. Every
project path named in a comment or docstring of the code (a `.py` file, or a folder of the
code such as `pipeline/training/`) must resolve, either from the repository root or, for names
written relative to the package (`align/mi.py`), from
`pipeline/`. Paths of generated data (data/, models/, metrics/...) are outputs, not checked.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("pipeline", "stages", "tests", "benchmarks")
# A relative path of one or more folders and a file name, or a folder written with a slash.
PATH_RE = re.compile(r"(?<![\w./:-])((?:[A-Za-z_][\w-]*/)+(?:[A-Za-z_][\w-]*\.py\b)?)")
GENERATED_ROOTS = {"data", "models", "metrics", "plots", "reports", "mlruns", "mlartifacts"}


def _texts(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring in a Python file."""
    source = path.read_text()
    found = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                found.append((node.body[0].lineno, doc))
    return found


def _resolves(name: str, root: Path) -> bool:
    """Whether a named path exists; names outside the code's folders are not ours to check."""
    top = name.split("/", 1)[0]
    subpackages = {p.name for p in (root / "pipeline").iterdir() if p.is_dir()}
    if top in GENERATED_ROOTS or top not in set(CODE_DIRS) | subpackages:
        return True
    candidates = [root / name, root / "pipeline" / name]
    return any(c.exists() for c in candidates)


def dangling_references(root: Path = ROOT) -> list[str]:
    """`file:line: name` for each project path named in code comments that does not exist."""
    problems = []
    for folder in CODE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            for line, text in _texts(path):
                for name in PATH_RE.findall(text):
                    if "/" in name and not _resolves(name, root):
                        problems.append(f"{path.relative_to(root)}:{line}: {name}")
    return sorted(problems)


def test_comments_and_docstrings_name_existing_files() -> None:
    problems = dangling_references()
    assert not problems, "names of files that do not exist:\n" + "\n".join(problems)


def test_a_moved_file_named_in_a_docstring_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "real.py").write_text(
        '"""See pipeline/real.py and pipeline/moved_away.py."""\n# and stages/gone.py\n'
    )
    assert dangling_references(tmp_path) == [
        "pipeline/real.py:1: pipeline/moved_away.py",
        "pipeline/real.py:2: stages/gone.py",
    ]
