#!/usr/bin/env python3
"""The import graph of the Rust crate's modules, its cycles and forbidden edges.

Reads every `crate::...` and `super::...` path in the code of src/**/*.rs
(comments skipped) and builds two graphs:

- the crate's top-level modules (`allocator`, `pad_store`, `store`, ...): an
  edge a -> b when any file of a names something of b;
- within each folder module (`src/pad_store/`, `src/allocator/`, ...), its
  submodules among themselves. A submodule naming its parent (`super::X`) is
  an edge to the sibling that defines X when the parent only re-exports it,
  and no edge when the parent defines it: a child using its parent is not a
  cycle between modules.

It prints each cycle and each forbidden edge, and exits 1 if there is any:
  - a backend module (`pad_store`, `backend_error`) reaching, directly or
    through others, the layers above it (store, allocator, journal, index,
    writer gate, Python layer);
  - `crypto` or `memory_map` reaching a backend (`pad_store`);
  - a module other than the Python layer importing through the crate root
    (`crate::Error` instead of `crate::error::Error`): the root re-exports the
    store layer, so that reaches upward.

Usage: python3 scripts/module_graph.py [SRC_DIR]  (default: src)
Standard library only.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

# Modules whose reach (direct or transitive) is limited, and what they must
# not reach.
FORBIDDEN_REACH: dict[str, set[str]] = {
    "pad_store": {"store", "allocator", "journal", "index", "writer_gate", "python"},
    "backend_error": {"pad_store", "store", "allocator", "journal", "error", "python"},
    "crypto": {"pad_store"},
    "memory_map": {"pad_store"},
}
# The layer allowed to import the crate root's re-exports (the public API).
ROOT_IMPORTERS = {"python"}

PATH = re.compile(
    r"\b(crate|super(?:::super)*)::((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*|\{)"
)
REEXPORT = re.compile(
    r"^\s*pub(?:\([a-z]+\))?\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)::(.*?);",
    re.DOTALL | re.MULTILINE,
)
TESTS_MOD = re.compile(r"^\s*mod\s+tests\s*\{", re.MULTILINE)


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    """`src/a/b.rs` -> ("a", "b"); `src/a/mod.rs` -> ("a",); `src/lib.rs` -> ()."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def strip_comments(text: str) -> str:
    """Code without `//` comments (doc comments included) and `/* */` blocks;
    a `//` inside a string literal cuts the rest of its line, which is rare
    and never hides an import here."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def names_in(group: str) -> list[str]:
    """The exported names of `{A, B as C, c::D}` or `A` (the part after `module::`)."""
    group = group.strip()
    if group.startswith("{"):
        group = group[1:].rsplit("}", 1)[0]
    names = []
    for item in group.split(","):
        item = item.strip()
        if not item:
            continue
        if " as " in item:
            item = item.split(" as ")[1]
        names.append(item.split("::")[-1].strip())
    return names


class Crate:
    def __init__(self, src: Path) -> None:
        self.src = src
        self.files = {module_of(src, f): f for f in sorted(src.rglob("*.rs"))}
        self.code = {m: strip_comments(f.read_text()) for m, f in self.files.items()}
        self.modules = set(self.files)
        # Declared but inline (`mod tests { }`) modules are not files: ignore.
        # name re-exported by module m -> the submodule (of m) defining it
        self.reexports: dict[tuple[str, ...], dict[str, str]] = defaultdict(dict)
        for module, code in self.code.items():
            for sub, rest in REEXPORT.findall(code):
                if module + (sub,) in self.modules:
                    for name in names_in(rest):
                        self.reexports[module][name] = sub
        # root re-exports: `pub use error::{Error, Result}` in lib.rs
        self.root_names = set(self.reexports[()])

    def resolve(self, module: tuple[str, ...], depth: int, path: str) -> tuple[str, ...]:
        """The module named by `path` written in `module`, `depth` levels up
        (`crate::` is all the way up, `super::` one level)."""
        segments = path.split("::")
        target = module[: max(len(module) - depth, 0)]
        for segment in segments:
            if target + (segment,) in self.modules:
                target = target + (segment,)
            else:
                sub = self.reexports.get(target, {}).get(segment)
                if sub is not None:
                    target = target + (sub,)
                break
        return target

    def references(self) -> list[tuple[tuple[str, ...], tuple[str, ...], str, bool]]:
        """(from, to, text, through the crate root) for every path in the code."""
        found = []
        for module, code in self.code.items():
            tests_at = TESTS_MOD.search(code)
            for match in PATH.finditer(code):
                head, path = match.group(1), match.group(2)
                if path == "{":
                    # `use crate::{a, b}`: each name is a path of its own.
                    end = code.index("}", match.end())
                    paths = [p.strip() for p in code[match.end() : end].split(",") if p.strip()]
                else:
                    paths = [path]
                # Inside `mod tests { }`, `super` is the file's own module.
                in_tests = tests_at is not None and match.start() > tests_at.start()
                depth = len(module) if head == "crate" else head.count("super") - in_tests
                for one in paths:
                    target = self.resolve(module, depth, one)
                    first = one.split("::")[0]
                    via_root = head == "crate" and (first,) not in self.modules
                    if target != module:
                        found.append((module, target, f"{head}::{one}", via_root))
        return found


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component of more than one node, with one
    cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(c, shortest_cycle(graph, set(c), c[0])) for c in components]


def shortest_cycle(graph: dict[str, set[str]], within: set[str], start: str) -> list[str]:
    """The shortest path start -> ... -> start inside one component."""
    paths = reach(graph, start, within)
    back = [path for node, path in paths.items() if start in graph.get(node, ())]
    return min(back, key=len) + [start] if back else [start]


def reach(
    graph: dict[str, set[str]], start: str, within: set[str] | None = None
) -> dict[str, list[str]]:
    """Every module reachable from start (through `within` only, if given),
    with a shortest path to it."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt not in paths and (within is None or nxt in within):
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    return paths


def check(src: Path) -> list[str]:
    crate = Crate(src)
    refs = crate.references()
    problems = []

    top: dict[str, set[str]] = defaultdict(set)
    nested: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for source, target, text, via_root in refs:
        if via_root and source and source[0] not in ROOT_IMPORTERS:
            problems.append(
                f"{'::'.join(source)} imports through the crate root ({text}): "
                "import from the module that defines it"
            )
        if not source or not target:
            continue
        if source[0] != target[0]:
            top[source[0]].add(target[0])
        elif len(source) >= 2 and len(target) >= 2 and source[1] != target[1]:
            nested[source[0]][source[1]].add(target[1])

    for members, cycle in cycles(top):
        problems.append(
            f"cycle among top-level modules {', '.join(members)}: " + " -> ".join(cycle)
        )
    for package, graph in sorted(nested.items()):
        for members, cycle in cycles(graph):
            problems.append(
                f"cycle among {package}'s submodules {', '.join(members)}: " + " -> ".join(cycle)
            )
    for module, banned in FORBIDDEN_REACH.items():
        for target, path in sorted(reach(top, module).items()):
            if target in banned:
                problems.append(f"{module} reaches {target}: " + " -> ".join(path))
    return problems


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem)
    if not problems:
        print("module graph: no cycles, no forbidden edges")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
