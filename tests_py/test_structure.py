"""The crate's module graph stays layered: no import cycle, no backend module
reaching the layers above it, no core module reaching a backend
(scripts/module_graph.py checks; these tests run it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "module_graph.py"


def run(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, check=False
    )


def test_the_crate_has_no_cycle_and_no_forbidden_edge() -> None:
    result = run(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no cycles" in result.stdout


def write(src: Path, files: dict[str, str]) -> None:
    for name, code in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)


def test_a_cycle_and_forbidden_edges_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "lib.rs": "pub mod a;\npub mod crypto;\npub mod pad_store;\npub mod store;\n"
            "pub use store::Store;\n",
            "a.rs": "use crate::crypto::seal;\n",
            "crypto.rs": "use crate::pad_store::Backend;\n// use crate::a::ignored;\n",
            "pad_store/mod.rs": "mod folder;\nmod object;\npub use self::object::classify;\n",
            "pad_store/folder.rs": "use super::classify;\nuse crate::Store;\n",
            "pad_store/object.rs": "use super::folder::Writer;\n",
            "store.rs": "pub struct Store;\n",
        },
    )
    result = run(tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "cycle among pad_store's submodules folder, object: folder -> object -> folder" in lines
    assert "crypto reaches pad_store: crypto -> pad_store" in lines
    assert "pad_store reaches store: pad_store -> store" in lines
    assert any(
        "pad_store::folder imports through the crate root (crate::Store)" in x for x in lines
    )
    # The commented-out import makes no edge: no crypto -> a -> crypto cycle.
    assert not any(line.startswith("cycle among top-level") for line in lines), lines


def test_a_child_naming_what_its_parent_defines_is_no_cycle(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "lib.rs": "pub mod allocator;\n",
            "allocator/mod.rs": "mod write;\npub struct Allocator;\nuse self::write::go;\n",
            "allocator/write.rs": "use super::Allocator;\n#[cfg(test)]\nmod tests {\n"
            "    use super::*;\n}\n",
        },
    )
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout


LONG_FUNCTIONS = ROOT / "scripts" / "long_functions.py"


def long_functions(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LONG_FUNCTIONS), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_no_function_of_the_crate_or_the_package_is_over_80_lines() -> None:
    result = long_functions(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_long_function_is_reported_and_tests_are_left_out(tmp_path: Path) -> None:
    body = "    let x = 1;\n" * 85
    write(
        tmp_path / "src",
        {
            "lib.rs": "pub fn short() {\n    go();\n}\n\npub async fn long(a: u8) -> u8 {\n"
            + body
            + "    a\n}\n\n#[cfg(test)]\nmod tests {\n    fn long_test() {\n"
            + body
            + "    }\n}\n",
        },
    )
    write(
        tmp_path / "python" / "anthill",
        {"mod.py": "def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 90},
    )
    result = long_functions(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["src/lib.rs:5 long 88", "python/anthill/mod.py:5 long 91"]
