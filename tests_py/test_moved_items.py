"""Readers whose index predates another process's compaction or overwrite:
fetch_file (to a path or a file object) and open_item follow the item to
where it lies now, and never hand out another item's bytes."""

from __future__ import annotations

import io
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


@pytest.mark.parametrize("size", [1000, PAD_SIZE + 1000], ids=["one-pad", "two-pads"])
def test_fetch_file_follows_an_item_another_process_compacted(
    make_store: Callable[..., anthill.Store], folder_url: str, tmp_path: Path, size: int
) -> None:
    # two-pads: a whole pad that stays, then 1000 bytes in a pad that is
    # emptied, so the stream has written the first piece when it finds the
    # second pad gone, and goes on from where the item lies now.
    data = data_of(size, 3)
    stored(folder_url, {**FILLERS, "k": data})
    reader = make_store(folder_url)
    assert reader.fetch_range("k", 0, 10) == data[:10]  # where k lies is known
    assert in_another_process(folder_url, COMPACT).split() == ["1", "1"]
    dest = tmp_path / "k.out"
    assert reader.fetch_file("k", dest) == size
    assert dest.read_bytes() == data
    sink = io.BytesIO()
    assert reader.fetch_file("k", sink) == size
    assert sink.getvalue() == data


def test_fetch_file_reports_progress_that_never_goes_back_when_it_follows(
    make_store: Callable[..., anthill.Store], folder_url: str, tmp_path: Path
) -> None:
    data = data_of(PAD_SIZE + 1000, 4)
    stored(folder_url, {**FILLERS, "k": data})
    reader = make_store(folder_url)
    assert reader.fetch_range("k", 0, 10) == data[:10]
    in_another_process(folder_url, COMPACT)
    events: list[anthill.GetEvent] = []
    reader.fetch_file("k", io.BytesIO(), callback=events.append)
    read = [e.bytes_read for e in events if isinstance(e, anthill.DownloadProgress)]
    assert read == sorted(set(read)) and read[-1] == len(data)
    starts = [e for e in events if isinstance(e, anthill.StartingDownload)]
    assert len(starts) == 1 and isinstance(events[-1], anthill.DownloadFinished)


def test_fetch_file_of_an_item_replaced_meanwhile_writes_the_new_one_to_a_path(
    make_store: Callable[..., anthill.Store], folder_url: str, tmp_path: Path
) -> None:
    # The other process replaces k and reuses its first pad for f: the
    # reader's first piece no longer authenticates as k's.
    old, new = data_of(PAD_SIZE + 1000, 5), data_of(PAD_SIZE + 1000, 6)
    stored(folder_url, {**FILLERS, "k": old})
    reader = make_store(folder_url)
    assert reader.fetch_range("k", 0, 10) == old[:10]
    in_another_process(
        folder_url,
        f"""
        s.store_item('k', {new!r}, overwrite=True)
        s.store_item('f', bytes({PAD_SIZE}))
        s.flush()
        """,
    )
    dest = tmp_path / "k.out"
    assert reader.fetch_file("k", dest) == len(new)
    assert dest.read_bytes() == new


def test_a_file_object_is_given_the_item_as_it_is_when_the_read_begins(
    make_store: Callable[..., anthill.Store], folder_url: str
) -> None:
    # A read on a folder first catches up with what other writers committed,
    # so the reader, whose index still names k's old pieces, reads the new k.
    old, new = data_of(PAD_SIZE + 1000, 7), data_of(PAD_SIZE + 1000, 8)
    stored(folder_url, {**FILLERS, "k": old})
    reader = make_store(folder_url)
    assert reader.fetch_range("k", 0, 10) == old[:10]
    in_another_process(
        folder_url,
        f"""
        s.store_item('k', {new!r}, overwrite=True)
        s.store_item('f', bytes({PAD_SIZE}))
        s.flush()
        """,
    )
    sink = io.BytesIO()
    assert reader.fetch_file("k", sink) == len(new)
    assert sink.getvalue() == new


def test_open_item_follows_a_small_item_another_process_compacted(
    make_store: Callable[..., anthill.Store], folder_url: str
) -> None:
    data = data_of(PAD_SIZE // 16 - 56, 9)  # small: committed in the log first
    stored(folder_url, {**FILLERS, "s": data})
    reader = make_store(folder_url)
    with reader.open_item("s") as item:  # pinned where s lies now
        assert in_another_process(folder_url, COMPACT).split() == ["1", "1"]
        assert item.read() == data
    assert reader.fetch_range("s", 5, 100) == data[5:105]
