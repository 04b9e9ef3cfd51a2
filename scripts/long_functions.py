#!/usr/bin/env python3
"""Functions longer than a limit (80 lines by default) in the Rust crate and
the Python package, tests left out: a long function is a sign that it does
several things, each of which wants a name.

Rust: every `fn` in src/**/*.rs before the file's `#[cfg(test)]` module,
measured from its `fn` line to its closing brace (braces in strings and
comments are rare enough here not to matter). Python: every `def` in
python/anthill/**/*.py, from its `def` line to its last line (`ast`).

Prints `path:line name length` for each, and exits 1 if there is any.

Usage: python3 scripts/long_functions.py [ROOT] [--limit N]  (default: . and 80)
Standard library only.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

RUST_FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def rust_functions(path: Path) -> list[tuple[int, str, int]]:
    lines = path.read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            break
        match = RUST_FN.match(line)
        if not match or line.rstrip().endswith(";"):
            continue
        depth, opened = 0, False
        for end in range(number, len(lines)):
            depth += lines[end].count("{") - lines[end].count("}")
            opened = opened or depth > 0
            if opened and depth <= 0:
                found.append((number + 1, match.group(6), end - number + 1))
                break
    return found


def python_functions(path: Path) -> list[tuple[int, str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def main() -> int:
    args = sys.argv[1:]
    limit = 80
    if "--limit" in args:
        at = args.index("--limit")
        limit = int(args[at + 1])
        del args[at : at + 2]
    root = Path(args[0]) if args else Path(".")
    long = []
    for path in sorted((root / "src").rglob("*.rs")):
        long += [(path, *f) for f in rust_functions(path)]
    for path in sorted((root / "python" / "anthill").rglob("*.py")):
        long += [(path, *f) for f in python_functions(path)]
    long = [f for f in long if f[3] > limit]
    for path, line, name, length in long:
        print(f"{path.relative_to(root)}:{line} {name} {length}")
    if not long:
        print(f"no function over {limit} lines")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
