"""Several processes write one local store at once (with readers
alongside); nothing is lost, no block is shared, the summary adds up.

The guarantee: every change to a store runs under an OS file lock on the
store folder (`flock` on `<store>/.lock`), taken by the first operation of a
process and shared by its concurrent operations; on taking it, a process
replays what others appended to the index. Reads catch up the same way when a
key is missing or an item fails its digest.

Small items (at most 1/16 of a pad, here 1 KiB) are committed in the index log
and written back to their pads later, by whichever writer holds the lock then:
the sizes mix them with items that fill or span pads; writers flush now and
then, two close their store and two leave it to the interpreter's exit.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import anthill

SECRET = "several-writers"
PAD_SIZE = 16384

WRITER = r"""
import hashlib, random, sys
import anthill
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(worker)
store = anthill.open(path)  # the secret: $ANTHILL_SECRET
for i in range(count):
    # 1 .. 1024 go through the log first; 16384 fills a pad; 40000 spans three.
    size = rng.choice([1, 200, 700, 1024, 1025, 1500, 9000, 16384, 40000])
    key = f"w{worker}-{i}-{size}"
    block = hashlib.sha256(key.encode()).digest()
    store.store_item(key, (block * (size // 32 + 1))[:size])
    if i % 60 == 59:
        store.flush()
if worker % 2:
    store.close()
print("ok", flush=True)
"""

READER = r"""
import hashlib, sys
import anthill
path, rounds = sys.argv[1], int(sys.argv[2])
store = anthill.open(path)
checked = 0
for _ in range(rounds):
    for key in list(store.keys())[-20:]:
        size = int(key.rsplit("-", 1)[1])
        block = hashlib.sha256(key.encode()).digest()
        assert store.fetch_item(key) == (block * (size // 32 + 1))[:size], key
        checked += 1
print("checked", checked, flush=True)
"""


def expected_value(key: str) -> bytes:
    size = int(key.rsplit("-", 1)[1])
    block = hashlib.sha256(key.encode()).digest()
    return (block * (size // 32 + 1))[:size]


def test_four_writers_and_two_readers_share_one_store(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    anthill.open(path, secret=SECRET, pad_size=PAD_SIZE).close()
    env = {**os.environ, "ANTHILL_SECRET": SECRET}

    def spawn(script: str, *args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-c", script, path, *args]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)

    writers = [spawn(WRITER, str(w), "250") for w in range(4)]
    readers = [spawn(READER, "30") for _ in range(2)]
    checked = 0
    for process in writers + readers:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out
        if process in readers:
            checked += int(out.split()[1])
    assert checked > 0, "the readers read items while the writers wrote"

    store = anthill.open(path, secret=SECRET, pad_size=PAD_SIZE)
    # Every writer closed its store or exited: nothing is left only in the log.
    assert store.unflushed_bytes() == 0
    keys = list(store.keys())
    assert len(keys) == 1000
    used = 0
    for key in keys:
        data = store.fetch_item(key)
        assert data == expected_value(key), key
        used += len(data)
    summary = store.summary()
    assert summary.items == 1000
    assert summary.pending == 0
    # No block shared by two items: the space in use is exactly their sum.
    assert summary.used_space == used
    assert summary.used_space + summary.free_space == summary.total_space
    assert len(os.listdir(Path(path) / "p")) == summary.total_pads
