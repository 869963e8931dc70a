"""Check bench's layer rules from the code's own imports (module-level and inside functions).

Prints every import that goes upward (a lower layer importing a higher one), import cycles
between packages, modules outside bench/cli that import argparse, and functions over 60 lines.
Exit status 1 when any rule is broken. Run: python scripts/layers.py [--quiet]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "bench"

# higher number = higher layer; a module may import modules of its own or a lower layer only
LAYERS = {
    "cli": 6, "api": 6,  # bench.api re-exports for plugins; nothing in bench imports it
    "gate": 5, "reports": 5,
    "pipeline": 4,
    "train": 3,
    "codecs": 2, "metrics": 2, "datasets": 2,
    "models": 1,
    "core": 0,
}
MAX_FUNCTION_LINES = 60


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "core"
    return parts[1] if parts[1] in LAYERS else "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def main() -> int:
    quiet = "--quiet" in sys.argv
    upward, argparse_users, long_functions = [], [], []
    edges: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        mod = module_name(path)
        tree = ast.parse(path.read_text())
        mine = layer_of(mod)
        for imp in imports(tree):
            if imp == "argparse" and mine != "cli":
                argparse_users.append(mod)
            if not imp.startswith("bench"):
                continue
            theirs = layer_of(imp)
            if theirs != mine:
                edges.setdefault(mine, set()).add(theirs)
            if LAYERS[theirs] > LAYERS[mine]:
                upward.append(f"{mod} ({mine}) imports {imp} ({theirs})")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{mod}.{node.name}: {n} lines")
    cycles = sorted({tuple(sorted((a, b))) for a, bs in edges.items() for b in bs if a in edges.get(b, set())})
    sections = [("upward imports", upward), ("argparse outside bench/cli", sorted(set(argparse_users))),
                ("package cycles", [f"{a} <-> {b}" for a, b in cycles]),
                (f"functions over {MAX_FUNCTION_LINES} lines", long_functions)]
    for title, rows in sections:
        print(f"{title}: {len(rows)}")
        if not quiet:
            for row in rows:
                print(f"  {row}")
    return 1 if any(rows for _, rows in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
