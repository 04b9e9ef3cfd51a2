"""The type information matches the runtime: mypy --strict on code using the
API passes (and catches misuse), and stubtest finds no stub/runtime mismatch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = """
from __future__ import annotations

import asyncio
import array

import numpy as np

import anthill
from anthill import ConfirmReservation, PutEvent, GetEvent, UploadProgress


def on_put(event: PutEvent) -> bool | None:
    match event:
        case ConfirmReservation(needed=needed, estimated_cost=cost):
            return needed <= 3 and cost is None
        case UploadProgress(bytes_written=done, total_bytes=total):
            print(done / total)
    return None


def on_any(event: PutEvent | GetEvent) -> None:
    print(event)


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: PutEvent) -> bool:
        self.count += 1
        return True


async def on_put_async(event: PutEvent) -> bool:
    await asyncio.sleep(0)
    return True


def use(store: anthill.Store) -> int:
    store.store_item("a", b"bytes", callback=on_put)
    store.store_item("b", bytearray(b"x"), callback=on_any, overwrite=True)
    store.store_item("c", memoryview(b"x"), callback=Counter(), max_new_pads=2)
    store.store_item("d", np.zeros(4, dtype=np.uint8), callback=anthill.progress)
    store.store_item("e", array.array("B", [1]), resume=False)
    data: bytes = store.fetch_item("a", callback=on_any)
    store["f"] = data
    value: bytes = store["f"]
    del store["f"]
    summary: anthill.StorageSummary = store.summary()
    needed: int | None = store.check_allocation_possible(10)
    keys: list[str] = list(store.keys())
    stats: anthill.BackendStats | None = store.backend_stats()
    url: str = store.url
    print(value, needed, keys, stats, url, "a" in store, len(store))
    return summary.free_space


async def use_async(store: anthill.Store) -> bytes:
    await store.store_item_async("g", b"x", callback=on_put_async)
    await store.store_item_async("h", b"x", callback=on_put)
    await store.remove_item_async("g")
    summary = await store.summary_async()
    print(summary.items, await store.check_allocation_possible_async(1))
    return await store.fetch_item_async("h", callback=on_any)


def main() -> None:
    with anthill.open("memory://typed", secret="s", pad_size=4096, max_new_pads=10) as store:
        use(store)
        asyncio.run(use_async(store))
    progress: anthill.Progress = anthill.Progress(assume_yes=True)
    try:
        anthill.open(None, secret=b"s", endpoint="http://localhost", allow_http=True)
    except anthill.KeyNotFoundError as error:
        print(error.key)
    except anthill.AnthillError:
        pass
    print(progress.declined)
"""

MISUSE = """
import anthill

store = anthill.open("memory://typed", secret="s")
store.store_item("k", "text")
store.store_item("k", b"x", callback=lambda event: "maybe")
store.fetch_item(42)
anthill.open("memory://x", pad_size="big")
"""


def mypy(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    path = tmp_path / name
    path.write_text(source)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(path),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )


def test_mypy_strict_accepts_code_using_the_api(tmp_path: Path) -> None:
    result = mypy(tmp_path, "sample.py", SAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_catches_misuse(tmp_path: Path) -> None:
    result = mypy(tmp_path, "misuse.py", MISUSE)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert {line.split(":")[1] for line in lines} >= {"5", "6", "7", "8"}, result.stdout


def test_stubs_match_the_runtime() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "anthill"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
