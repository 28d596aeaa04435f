"""Tests of pipeline/tracking/tags.py: the only place under pipeline/ and stages/ that spells
an MLflow tag name.

The source is parsed with `ast` and every string literal is checked against the tag names
that tags.py defines (its `*_TAG` constants):

1. a literal equal to a dotted tag name ("data.fingerprint", "mlflow.note.content"): no other
   string of the pipeline is spelled so;
2. a search filter that names a tag ("tags.`data.fingerprint` = ...");
3. a tag name without a dot ("role") where a tag goes: a key of a dict given as `tags=` or to
   a call named *tag*, or assigned to a name ending in "tags"; the argument of `.get` or `[]`
   on something ending in "tags" (a run record's "role" field is no tag and stays allowed);
4. an `mlflow.`-prefixed literal (a tag name tags.py does not know yet) as a dict key or as
   the first argument of a call named *tag*.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from pipeline.tracking import tags

ROOT = Path(__file__).resolve().parents[1]
TAGS_FILE = Path("pipeline") / "tracking" / "tags.py"
TAG_NAMES = {v for k, v in vars(tags).items() if k.endswith("_TAG") and isinstance(v, str)}


def _name(node: ast.AST) -> str:
    """The dotted source text of a name or attribute chain ("run.data.tags"), else ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def _tag_positions(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes standing where a tag name goes (rule 3)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            tagging = "tag" in _name(node.func).rsplit(".", 1)[-1].lower()
            values = [*(node.args if tagging else []), *node.keywords]
            for value in values:
                if isinstance(value, ast.keyword):
                    if value.arg != "tags" and not tagging:
                        continue
                    value = value.value
                if isinstance(value, ast.Dict):
                    yield from (k for k in value.keys if k is not None)
            if tagging and node.args:
                yield node.args[0]
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and node.args:
                if _name(func.value).endswith("tags"):
                    yield node.args[0]
        elif isinstance(node, ast.Subscript) and _name(node.value).endswith("tags"):
            yield node.slice
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(_name(t).endswith("tags") for t in node.targets):
                yield from (k for k in node.value.keys if k is not None)


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def tag_literals(root: Path) -> list[str]:
    """``file:line: literal`` for every tag name spelled outside tags.py (rules 1 to 4)."""
    problems: set[tuple[str, int, str]] = set()
    dotted = {t for t in TAG_NAMES if "." in t}
    for path in sorted([*(root / "pipeline").rglob("*.py"), *(root / "stages").rglob("*.py")]):
        rel = path.relative_to(root)
        if rel == TAGS_FILE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        found: dict[int, str] = {}
        for node in ast.walk(tree):
            text = _literal(node)
            if text is None:
                continue
            if text in dotted or any(f"tags.`{t}`" in text for t in TAG_NAMES):
                found[id(node)] = text  # rules 1 and 2
        positions = list(_tag_positions(tree))
        for node in positions:
            text = _literal(node)
            if text is not None and text in TAG_NAMES:
                found[id(node)] = text  # rule 3
        keys = [k for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k]
        for node in [*keys, *positions]:
            text = _literal(node)
            if text is not None and text.startswith(tags.MLFLOW_PREFIX):
                found[id(node)] = text  # rule 4
        nodes = {id(n): n for n in ast.walk(tree)}
        problems.update((rel.as_posix(), nodes[key].lineno, text) for key, text in found.items())
    return [f"{rel}:{line}: {text!r}" for rel, line, text in sorted(problems)]


def test_no_tag_name_is_spelled_outside_tags_py() -> None:
    problems = tag_literals(ROOT)
    assert problems == [], "use the constants of pipeline/tracking/tags.py:\n" + "\n".join(problems)


def test_tag_names_are_distinct() -> None:
    constants = [v for k, v in vars(tags).items() if k.endswith("_TAG")]
    assert len(constants) == len(set(constants))  # one constant per tag name


def test_the_check_finds_a_planted_literal(tmp_path: Path) -> None:
    (tmp_path / "pipeline" / "tracking").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    (tmp_path / TAGS_FILE).write_text('FINGERPRINT_TAG = "data.fingerprint"\n')
    (tmp_path / "pipeline" / "planted.py").write_text(
        "def f(handle, run, fingerprint):\n"
        '    handle.set_tags({"mlflow.user": "me"})\n'  # 2: unknown mlflow. tag
        '    role = run.data.tags.get("role")\n'  # 3: bare tag name read from tags
        "    query = f\"tags.`deepflash.evaluated` = 'true'\"\n"  # 4: a filter naming a tag
        '    record = {"role": role, "fingerprint": fingerprint}\n'  # a record field: allowed
        '    header = ["run", "role"]\n'  # a column title: allowed
        '    tags = {"role": "paper"}\n'  # 7: bare tag name as a tags key
        '    return record, header, query, tags, "data.fingerprint"\n'  # 8: dotted tag name
    )
    (tmp_path / "stages" / "stage.py").write_text('NOTE = "mlflow.note.content"\n')
    assert tag_literals(tmp_path) == [
        "pipeline/planted.py:2: 'mlflow.user'",
        "pipeline/planted.py:3: 'role'",
        "pipeline/planted.py:4: \"tags.`deepflash.evaluated` = 'true'\"",
        "pipeline/planted.py:7: 'role'",
        "pipeline/planted.py:8: 'data.fingerprint'",
        "stages/stage.py:1: 'mlflow.note.content'",
    ]
