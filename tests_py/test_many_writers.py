"""Many writer processes on one store: four overwriting one key agree on
its last value; a writer SIGKILLed in the middle of a large put leaves its
space and its pending put to the others; dask and xarray workers write a
zarr array through ``AnthillStore`` and read it back.

Handles of other processes see a change after ``store.refresh()``; on a
store without it, ``len(store)`` catches up with the other writers (as
``keys()`` and ``summary()`` do), so these tests run before and after the
many-writers redesign.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import anthill
import pytest

SECRET = "many-writers-secret"
PAD_SIZE = 16384

HELPERS = r"""
import hashlib, sys
import anthill

def value(tag, size):
    head = (tag + "|").encode()
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + body)[: max(size, len(head))]

def refresh(store):
    (getattr(store, "refresh", None) or (lambda: len(store)))()

def say(*words):
    print(*words, flush=True)

def wait_for(word):
    line = sys.stdin.readline().strip()
    assert line == word, (line, word)
"""

OVERWRITER = (
    HELPERS
    + r"""
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = anthill.open(path)  # the secret: $ANTHILL_SECRET
say("ready")
wait_for("go")
sizes = [100, 1000, 3000, 16384, 40000]
for i in range(count):
    store.store_item("shared", value(f"{name}.{i}", sizes[i % len(sizes)]), overwrite=True)
say("written")
wait_for("read")
refresh(store)
say(store.fetch_item("shared").split(b"|")[0].decode())
store.close()
"""
)


def value(tag: str, size: int) -> bytes:
    head = (tag + "|").encode()
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + body)[: max(size, len(head))]


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
    )


def tell(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdin is not None
    process.stdin.write(word + "\n")
    process.stdin.flush()


def hear(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def assert_sound(path: Path, items: dict[str, bytes]) -> None:
    """A fresh handle reads exactly `items`; nothing pending; the space in
    use is theirs; verify is ok; every pad file is in the map."""
    with anthill.open(str(path), secret=SECRET) as store:
        assert sorted(store.keys()) == sorted(items)
        for key, data in items.items():
            assert store.fetch_item(key) == data, key
        summary = store.summary()
        assert summary.pending == 0
        assert summary.used_space == sum(len(data) for data in items.values())
        assert summary.used_space + summary.free_space == summary.total_space
        assert store.verify(deep=True).ok
        pads = [name for name in os.listdir(path / "p") if len(name) == 32]
        assert len(pads) <= summary.total_pads, (len(pads), summary.total_pads)
        assert len(os.listdir(path / "p")) == len(pads), "a partial write left behind"


def test_four_writers_overwriting_one_key_end_with_one_value_every_handle_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    anthill.open(str(path), secret=SECRET, pad_size=PAD_SIZE).close()
    count = 25
    writers = [spawn(OVERWRITER, str(path), f"w{n}", str(count)) for n in range(4)]
    try:
        assert [hear(w) for w in writers] == ["ready"] * 4
        for writer in writers:
            tell(writer, "go")
        assert [hear(w) for w in writers] == ["written"] * 4
        for writer in writers:
            tell(writer, "read")
        seen = [hear(w) for w in writers]
    finally:
        for writer in writers:
            writer.communicate(timeout=120)
    assert [w.returncode for w in writers] == [0] * 4
    # One value for every handle: the last put of one of the writers (each
    # writer's puts take effect in its order).
    assert len(set(seen)) == 1, seen
    name, index = seen[0].rsplit(".", 1)
    assert name in {f"w{n}" for n in range(4)} and int(index) == count - 1, seen
    sizes = [100, 1000, 3000, 16384, 40000]
    assert_sound(path, {"shared": value(seen[0], sizes[(count - 1) % len(sizes)])})


LARGE_WRITER = (
    HELPERS
    + r"""
url, size = sys.argv[1], int(sys.argv[2])
store = anthill.open(url)

def on_event(event):
    if isinstance(event, anthill.ScratchpadCommitComplete) and event.index == 2:
        say("committed 2")

store.store_item("large", value("large", size), callback=on_event)
say("finished")
"""
)

RECOVERER = (
    HELPERS
    + r"""
path, size, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = anthill.open(path)
store.store_item("mine", value("mine", 3000))
say("ready")
wait_for("recover")
refresh(store)
say("pending", store.summary().pending)
if how == "resume":
    # Committed pads are kept: the resumed put writes only the others.
    store.store_item("large", value("large", size), resume=True)
else:
    try:
        store.store_item("large", value("other", 5000), overwrite=True)
        say("not refused")
    except anthill.UploadPendingError:
        store.remove_item("large")  # discards the interrupted upload and its space
        store.store_item("large", value("other", 5000))
say("verify", store.verify(deep=True).ok)
store.close()
"""
)


@pytest.mark.parametrize("how", ["resume", "discard"])
def test_a_writer_killed_in_a_large_put_leaves_it_to_the_others(tmp_path: Path, how: str) -> None:
    path = tmp_path / "store"
    anthill.open(str(path), secret=SECRET, pad_size=PAD_SIZE).close()
    size = 8 * PAD_SIZE + 100  # nine pads
    recoverer = spawn(RECOVERER, str(path), str(size), how)
    try:
        assert hear(recoverer) == "ready"
        # Each pad write takes 40 ms, so the kill lands with pads to go.
        writer = spawn(LARGE_WRITER, f"sim+file://{path}?latency_ms=40", str(size))
        assert hear(writer) == "committed 2"
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL
        tell(recoverer, "recover")
        assert hear(recoverer) == "pending 1"
        assert hear(recoverer) == "verify True"
    finally:
        recoverer.communicate(timeout=120)
    assert recoverer.returncode == 0
    large = value("large", size) if how == "resume" else value("other", 5000)
    assert_sound(path, {"mine": value("mine", 3000), "large": large})


DASK_WRITER = r"""
import sys
import dask.array as da
import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster
from anthill.zarr import AnthillStore

url = sys.argv[1]


def count_opens():
    import anthill._store as module
    real = module.open

    def counting(*args, **kwargs):
        module.opens_counted = getattr(module, "opens_counted", 0) + 1
        return real(*args, **kwargs)

    module.open = counting


def opens():
    import anthill._store as module
    return getattr(module, "opens_counted", 0)


with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
    client.run(count_opens)
    x = da.arange(400_000, chunks=25_000, dtype="f8") * 3.0
    # Each chunk is written by a worker process, through the one handle
    # the worker opened for the store (unpickled once per task).
    x.to_zarr(AnthillStore(url, prefix="plain"), component="x")
    ds = xr.Dataset({"t": (("time",), x)}, coords={"time": np.arange(400_000)})
    ds.chunk({"time": 50_000}).to_zarr(AnthillStore(url, prefix="xr"), mode="w")
    workers = len(client.scheduler_info()["workers"])
    back = da.from_zarr(AnthillStore(url, prefix="plain", read_only=True), component="x")
    same = bool((back == x).all().compute())
    opened = xr.open_zarr(AnthillStore(url, prefix="xr", read_only=True))
    equal = bool((opened["t"] == ds["t"]).all().compute())
    per_worker = sorted(client.run(opens).values())
print(workers, same, equal, max(per_worker), flush=True)
"""


def test_dask_workers_and_xarray_write_and_read_a_zarr_array(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    pytest.importorskip("dask.distributed")
    pytest.importorskip("xarray")
    url = (tmp_path / "store").as_uri()
    anthill.open(url, secret=SECRET, pad_size=64 * 1024).close()
    done = subprocess.run(
        [sys.executable, "-c", DASK_WRITER, url],
        capture_output=True,
        check=False,
        text=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # One open per worker process, however many chunks it stored and read
    # (a handle per task took the writer lock, on S3 the lease, per chunk).
    assert done.stdout.split() == ["4", "True", "True", "1"], done.stdout
    with anthill.open(url, secret=SECRET) as store:
        chunks = [key for key in store if key.startswith("plain/x/c/")]
        assert len(chunks) == 16  # 400,000 values in chunks of 25,000
        assert store.verify(deep=True).ok
        assert store.summary().pending == 0
