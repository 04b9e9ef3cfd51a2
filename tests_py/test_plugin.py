"""The pytest plugin, used as a user would: a test file run by pytest in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_TESTS = """
import anthill


def test_fixture_gives_a_fresh_store(anthill_store):
    assert isinstance(anthill_store, anthill.Store)
    assert len(anthill_store) == 0
    anthill_store["answer"] = b"42"
    assert anthill_store["answer"] == b"42"
    assert anthill_store.url.startswith("memory://")


def test_each_test_gets_its_own(anthill_store):
    assert "answer" not in anthill_store
    anthill_store.store_item("k", b"v" * 10_000)
    assert anthill_store.fetch_item("k") == b"v" * 10_000


async def test_async_use(anthill_store):
    await anthill_store.store_item_async("k", b"v")
    assert await anthill_store.fetch_item_async("k") == b"v"
"""


def run_pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user_code.py").write_text(USER_TESTS)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.pop("ANTHILL_SECRET", None)  # the fixture needs no secret
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            *options,
            str(tmp_path),
        ],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_fixture_through_the_entry_point(tmp_path: Path) -> None:
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_plugin_named_explicitly(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "-p", "no:anthill", "-p", "anthill.pytest_plugin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("anthill") == "anthill.pytest_plugin"
