"""`Store.list_items()` and `anthill ls -l`: sizes and times without reading data."""

import subprocess
import sys
import time

import anthill


def test_list_items_gives_sizes_and_times_without_downloads() -> None:
    store = anthill.open("sim+memory://list-items", secret="s", pad_size=4096)
    before = time.time()
    store.store_item("b", b"x" * 5000)
    store.store_item("a", b"")
    read = store.backend_stats().get.bytes
    items = store.list_items()
    assert [(i.key, i.size) for i in items] == [("a", 0), ("b", 5000)]
    assert all(int(before) - 1 <= i.created <= i.modified <= time.time() + 1 for i in items)
    # (catching up with other writers probes for a log object: no bytes)
    assert store.backend_stats().get.bytes == read, "no item was read"


def test_ls_long_prints_sizes(tmp_path) -> None:
    url = str(tmp_path / "store")
    store = anthill.open(url, secret="s", pad_size=4096)
    store.store_item("photo", b"1" * 1234)
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "anthill", "--store", url, "ls", "-l"],
        capture_output=True,
        text=True,
        env={"ANTHILL_SECRET": "s", "PATH": ""},
        check=True,
    ).stdout
    assert "1234  photo" in out
