"""Readers whose index predates another process's compaction: open_item
follows the item to where it lies now."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


def data_of(size: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def in_another_process(url: str, code: str) -> str:
    """Runs `code` with `s`, the store at `url` opened in a new process; its output."""
    program = f"import anthill\ns = anthill.open({url!r}, secret={SECRET!r})\n"
    program += textwrap.dedent(code) + "\ns.close()\n"
    done = subprocess.run(
        [sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


COMPACT = """
s.remove_item('b')
r = s.compact()
print(r.items_moved, r.pads_released)
"""


@pytest.fixture
def folder_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/store"


def stored(url: str, items: dict[str, bytes]) -> None:
    """A store at `url` with `items`, stored in order and written back."""
    writer = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    for key, value in items.items():
        writer.store_item(key, value)
    writer.flush()
    writer.close()


# Pad 0: a and b (96 bytes free); the rest in pads of its own. Once b is
# removed, a compaction moves what follows a and b into pad 0 and deletes
# the pads it leaves empty.
FILLERS = {"a": data_of(2000, 1), "b": data_of(2000, 2)}


def test_open_item_follows_a_small_item_another_process_compacted(
    make_store: Callable[..., anthill.Store], folder_url: str
) -> None:
    data = data_of(PAD_SIZE // 16 - 56, 9)  # small: committed in the log first
    stored(folder_url, {**FILLERS, "s": data})
    reader = make_store(folder_url)
    with reader.open_item("s") as item:
        assert item.read(10) == data[:10]
        assert in_another_process(folder_url, COMPACT).split() == ["1", "1"]
        item.seek(0)
        assert item.read() == data
    assert reader.fetch_range("s", 5, 100) == data[5:105]
