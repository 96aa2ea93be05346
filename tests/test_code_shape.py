"""The code stays readable: no function in frcnn/ or scripts/ is longer than 50 lines (a longer one is doing
more than one thing: split it)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 50


def long_functions(folder: Path, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_checker_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert long_functions(tmp_path) == ["m.py:5 long (51 lines)"]
    finally:
        REPO = saved


def test_no_function_is_longer_than_50_lines():
    assert long_functions(REPO / "frcnn") + long_functions(REPO / "scripts") == []
