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
import itertools
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
# Rounds count once the writers' first items show: a reader that starts
# before any writer has committed keeps looking instead of finishing empty.
while rounds:
    keys = list(store.keys())[-20:]
    for key in keys:
        size = int(key.rsplit("-", 1)[1])
        block = hashlib.sha256(key.encode()).digest()
        assert store.fetch_item(key) == (block * (size // 32 + 1))[:size], key
        checked += 1
    rounds -= 1 if keys else 0
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


# Each writer overwrites keys the others write too, removes some, and
# stores items of every size, through a `sim+` store that records every pad
# write (who, which pad, which version, when).
OVERWRITER = r"""
import random, sys
import anthill
url, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(worker)
store = anthill.open(url)  # the secret: $ANTHILL_SECRET
for i in range(count):
    size = rng.choice([100, 1024, 3000, 9000, 16384, 40000])
    key = f"shared-{rng.randrange(12)}"
    store.store_item(key, bytes([worker]) * size, overwrite=True)
    if i % 7 == 6:
        try:
            store.remove_item(f"shared-{rng.randrange(12)}")
        except anthill.KeyNotFoundError:
            pass
    if i % 20 == 19:
        store.flush()
store.close()
print("ok", flush=True)
"""


def test_no_two_writers_ever_write_one_pad_at_once(tmp_path: Path) -> None:
    """Pads are shared by items of several writers, but their writes never
    overlap in time and their versions never go back: no writer ever writes
    over space, or a pad version, another was given."""
    record = tmp_path / "pad-writes.txt"
    url = f"sim+{(tmp_path / 'store').as_uri()}?record_pad_writes={record}"
    anthill.open(url, secret=SECRET, pad_size=PAD_SIZE).close()
    env = {**os.environ, "ANTHILL_SECRET": SECRET}
    command = [sys.executable, "-c", OVERWRITER, url]
    writers = [
        subprocess.Popen([*command, str(w), "60"], stdout=subprocess.PIPE, text=True, env=env)
        for w in range(4)
    ]
    for process in writers:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out

    writes: dict[str, list[tuple[int, int, int, str]]] = {}
    for line in record.read_text().splitlines():
        writer, pad, version, start, end = line.split()
        writes.setdefault(pad, []).append((int(start), int(end), int(version), writer))
    by_writers = {w for pad_writes in writes.values() for *_, w in pad_writes}
    shared = [pad for pad, pad_writes in writes.items() if len({w for *_, w in pad_writes}) > 1]
    assert len(by_writers) >= 4, "every writer wrote pads"
    assert shared, "some pads were written by several writers"
    for pad, pad_writes in writes.items():
        pad_writes.sort()
        for before, after in itertools.pairwise(pad_writes):
            assert before[1] <= after[0], f"two writes of {pad} overlap: {before} {after}"
            # The same version twice is a write-back done again: its record
            # rides with its writer's next log write, and a writer that gave
            # the lock back before that leaves the next to write it back too.
            assert before[2] <= after[2], f"{pad} went from version {before[2]} to {after[2]}"

    store = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    for key in store:
        data = store.fetch_item(key)
        assert len(set(data)) == 1, key  # one writer's bytes, whole
    assert store.verify().ok
    store.close()
