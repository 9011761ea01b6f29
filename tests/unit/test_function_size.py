"""No function of the product is over 80 lines, except those that return SQL text.

A long function mixes decisions that want names of their own; a query is one statement and
reads best whole, so the functions that render SQL (named ``*_sql``) are exempt.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 80


def _packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return sorted({package.split(".")[0] for package in config["tool"]["setuptools"]["packages"]})


def long_functions(root: Path, packages: list[str], max_lines: int) -> list[str]:
    """``path:line name (n lines)`` of every function over ``max_lines`` not named ``*_sql``."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                lines = node.end_lineno - node.lineno + 1
                if lines > max_lines and not node.name.endswith("_sql"):
                    where = path.relative_to(root)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_product_function_is_over_80_lines() -> None:
    packages = _packages()
    assert {"core", "training", "online_api"} <= set(packages)
    assert long_functions(ROOT, packages, MAX_LINES) == []


def test_a_long_function_is_found_and_a_long_query_is_not(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        f"def long_one():\n{body}\n\n\ndef long_sql():\n{body}\n\n\ndef short():\n    pass\n"
    )
    assert long_functions(tmp_path, ["pkg"], MAX_LINES) == ["pkg/mod.py:1 long_one (86 lines)"]
