"""Opening a store builds no map of used space; the first change builds it
from the index as it is then. A handle that opened and read while another
process wrote, and then writes itself, must place its data apart from the
other's: checked by outcomes (every value intact, space adding up) in a
fresh process afterwards."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import anthill

SECRET = "open-cost"
PAD_SIZE = 16384

OTHER_WRITER = r"""
import hashlib, sys
import anthill
path = sys.argv[1]
store = anthill.open(path)  # the secret: $ANTHILL_SECRET
for i in range(0, 90, 2):
    store.remove_item(f"first-{i}-{[10, 700, 5000, 16384, 40000][i % 5]}")
for i in range(90):
    key = f"other-{i}-{[10, 700, 5000, 16384, 40000][i % 5]}"
    size = int(key.rsplit("-", 1)[1])
    block = hashlib.sha256(key.encode()).digest()
    store.store_item(key, (block * (size // 32 + 1))[:size])
store.close()
print("ok", flush=True)
"""


def value(key: str) -> bytes:
    size = int(key.rsplit("-", 1)[1])
    block = hashlib.sha256(key.encode()).digest()
    return (block * (size // 32 + 1))[:size]


def keys(tag: str) -> list[str]:
    return [f"{tag}-{i}-{[10, 700, 5000, 16384, 40000][i % 5]}" for i in range(90)]


def test_a_reader_that_writes_after_another_process_keeps_its_data_apart(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "store")
    first = keys("first")
    with anthill.open(path, secret=SECRET, pad_size=PAD_SIZE) as store:
        for key in first:
            store.store_item(key, value(key))

    reader = anthill.open(path, secret=SECRET)
    assert reader.fetch_item(first[1]) == value(first[1])
    assert run(OTHER_WRITER, path) == ["ok"]

    mine = keys("mine")
    for key in mine:
        reader.store_item(key, value(key))
    reader.close()

    live = first[1::2] + keys("other") + mine
    with anthill.open(path, secret=SECRET) as fresh:
        assert sorted(fresh.keys()) == sorted(live)
        for key in live:
            assert fresh.fetch_item(key) == value(key), key
        summary = fresh.summary()
        assert summary.items == len(live)
        assert summary.used_space == sum(len(value(k)) for k in live)


INDEX_CACHE_ITEMS = 12_000  # above the size from which a store keeps one

READ_ALL = r"""
import sys
import anthill
store = anthill.open(sys.argv[1])  # the secret: $ANTHILL_SECRET
print(len(store))
for key in sys.argv[2:]:
    print(store.fetch_item(key).hex())
store.close()
"""

CHANGE_SOME = r"""
import sys
import anthill
with anthill.open(sys.argv[1]) as store:
    for i in range(0, 300, 3):
        store.remove_item(f"small-{i}")
    for i in range(1, 300, 3):
        store.store_item(f"small-{i}", b"changed %d" % i, overwrite=True)
    store.store_item("added", b"added later")
print("ok", flush=True)
"""


def small_value(i: int) -> bytes:
    return b"value %d" % i


def child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `script` in a fresh Python process with the store's secret."""
    env = {**os.environ, "ANTHILL_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def run(script: str, *args: str) -> list[str]:
    """The words a successful `child` printed."""
    done = child(script, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_local_index_cache_never_hides_another_processs_writes(tmp_path: Path) -> None:
    import asyncio

    path = str(tmp_path / "store")

    async def fill() -> None:
        with anthill.open(path, secret=SECRET) as store:
            for first in range(0, INDEX_CACHE_ITEMS, 2000):
                await asyncio.gather(
                    *(
                        store.store_item_async(f"small-{i}", small_value(i))
                        for i in range(first, first + 2000)
                    )
                )
            store.flush()

    asyncio.run(fill())
    cache_folder = Path(os.environ["XDG_STATE_HOME"]) / "anthill" / "index-cache"
    assert not cache_folder.exists()

    # A fresh process loads the index from the store and keeps a copy.
    sample = ["small-0", "small-1", "small-2", "small-11999"]
    out = run(READ_ALL, path, *sample)
    assert out == [str(INDEX_CACHE_ITEMS)] + [small_value(int(k[6:])).hex() for k in sample]
    (cache,) = cache_folder.iterdir()
    kept = cache.stat()

    # Another process changes the store; the next reader opens from the copy
    # (left as it was) and replays those changes over it.
    assert run(CHANGE_SOME, path) == ["ok"]
    out = run(READ_ALL, path, "small-1", "small-2", "added", "small-11999")
    assert out == [
        str(INDEX_CACHE_ITEMS - 100 + 1),
        b"changed 1".hex(),
        small_value(2).hex(),
        b"added later".hex(),
        small_value(11999).hex(),
    ]
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)

    # A removed item stays removed, whatever the copy says.
    gone = child(READ_ALL, path, "small-0")
    assert gone.returncode != 0
    assert "KeyNotFoundError" in gone.stderr

    # A damaged copy: the reader notices and reads from the store instead.
    # (Every block is authenticated when read; only the head is at open.)
    damaged = bytearray(cache.read_bytes())
    damaged[-100] ^= 1
    cache.write_bytes(bytes(damaged))
    with anthill.open(path, secret=SECRET) as store:
        keys = store.keys()  # reads every block
        assert len(keys) == INDEX_CACHE_ITEMS - 100 + 1
        assert store.fetch_item("small-9999") == small_value(9999)
    # Removed, or (when replaying the log over it found the damage at open)
    # replaced by a copy of what the store holds.
    assert not cache.exists() or cache.read_bytes() != bytes(damaged)
