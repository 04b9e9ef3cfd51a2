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
    env = {**os.environ, "ANTHILL_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", OTHER_WRITER, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]

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
