"""SQL only with parameters: a statement built by string formatting may put in names (schemas,
tables, columns from the code's own constants), never values. Every such place is listed here,
reviewed, with what it interpolates; a new one fails this test until it is reviewed and listed
(values go in as parameters: ``%s`` / ``:name``, or psycopg's ``sql.Identifier`` / ``sql.Literal``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hft.config import REPO_ROOT

pytestmark = pytest.mark.security

SQL_CALLS = {"execute", "executemany", "text", "exec_driver_sql", "copy", "read_sql", "read_sql_query"}
ROOTS = ("hft", "api", "workers", "streamers", "dashboard", "dags", "plugins", "bench")

# (file, function) -> what is formatted into the statement; all of it from the code, none from input
REVIEWED = {
    ("hft/reporting/market.py", "latest_features"): "the feature spec's column names",
    ("hft/trading/store.py", "last_trade"): "a fixed condition chosen by the code; values are binds",
    ("hft/storage/migrations/versions/0001_market.py", "upgrade"): "schema names and column lists",
    ("hft/storage/migrations/versions/0002_features.py", "upgrade"): "the feature columns of the spec",
    ("bench/pipeline.py", "delete_rows"): "the bench's own table names",
    ("bench/pipeline.py", "vacuum"): "the bench's own table names",
}


def _dynamic(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Mod, ast.Add))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        # psycopg's sql.SQL(...).format(sql.Identifier(..), sql.Literal(..)) quotes what it is given
        inner = node.func.value
        return not (isinstance(inner, ast.Call) and ast.unparse(inner.func) in {"sql.SQL", "SQL"})
    return False


def _formatted_sql() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for root in ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            rel = str(path.relative_to(REPO_ROOT))
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if not isinstance(node, ast.Call) or not node.args:
                        continue
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                    if name in SQL_CALLS and _dynamic(node.args[0]):
                        found.setdefault((rel, fn.name), []).append(
                            f"{node.lineno}: {ast.unparse(node.args[0])[:90]}"
                        )
    return found


def test_statements_are_formatted_only_where_reviewed() -> None:
    found = _formatted_sql()
    new = {k: v for k, v in found.items() if k not in REVIEWED}
    assert not new, f"SQL built by string formatting, not reviewed (use parameters): {new}"


def test_the_review_list_names_only_places_that_exist() -> None:
    assert set(REVIEWED) <= set(_formatted_sql()), set(REVIEWED) - set(_formatted_sql())


def test_the_scan_catches_a_value_formatted_into_a_statement(tmp_path: Path) -> None:
    bad = ast.parse("def f(cur, sym):\n    cur.execute(f\"SELECT * FROM t WHERE s = '{sym}'\")\n")
    call = next(n for n in ast.walk(bad) if isinstance(n, ast.Call) and n.args)
    assert _dynamic(call.args[0])
    good = ast.parse('def f(cur, sym):\n    cur.execute("SELECT * FROM t WHERE s = %s", (sym,))\n')
    call = next(n for n in ast.walk(good) if isinstance(n, ast.Call) and n.args)
    assert not _dynamic(call.args[0])
