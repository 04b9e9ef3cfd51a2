"""Small items through the Python API: a put of at most 1/16 of a pad commits
by one log write of about its size, and the pads it shares are written back
later (when half dirty, when idle, before a checkpoint, on ``flush()``,
``close()`` and exit).

Counts and outcomes only: backend requests and bytes from ``backend_stats()``
of a ``sim+file://`` store, bytes read back, ``unflushed_bytes()``. Other
processes are real subprocesses; a crash is a SIGKILL. A writer that must be
caught holding unflushed items stops itself (SIGSTOP) right after it reports
them, so no background write-back can run between its report and the kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthill
import pytest
from conftest import SECRET, Recorder

KIB = 1024
DEFAULT_PAD = 4 * 1024 * KIB

# Stores small items (`count` of them, sizes drawn from `sizes`), printing
# one JSON line per item once `store_item` returned, then its unflushed
# bytes; then, as `then` says: "stop" (SIGSTOP itself, to be killed or
# continued; continued, it closes the store), "wait" (reads one line of
# standard input, then exits without closing: the interpreter's exit must
# write back), or "exit" (exits at once without closing).
WRITER = r"""
import json, os, random, signal, sys
import anthill

path, count, sizes, then = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
flush_at = int(sys.argv[5])
store = anthill.open(path)  # the secret: $ANTHILL_SECRET
rng = random.Random(path)
for i in range(count):
    if i == flush_at:
        store.flush()
    key, size = f"k{i}", rng.choice(sizes)
    store.store_item(key, random.Random(key).randbytes(size))
    print(json.dumps({"key": key, "size": size}), flush=True)
print(json.dumps({"unflushed": store.unflushed_bytes()}), flush=True)
if then == "stop":
    os.kill(os.getpid(), signal.SIGSTOP)
    store.close()
    print(json.dumps({"closed": True}), flush=True)
elif then == "wait":
    sys.stdin.readline()
"""


def item(key: str, size: int) -> bytes:
    """The writer's value for ``key``: incompressible, distinct per key."""
    return random.Random(key).randbytes(size)


def writes(store: anthill.Store) -> tuple[int, int, int]:
    """Write requests so far (pad writes are ``put``, and ``durable_put`` for
    write-backs and checkpoints; log objects and new pads are ``reserve``),
    their payload bytes, and the pad writes alone (with any checkpoint)."""
    stats = store.backend_stats()
    assert stats is not None
    return (
        stats.put.calls + stats.durable_put.calls + stats.reserve.calls,
        stats.put.bytes + stats.durable_put.bytes + stats.reserve.bytes,
        stats.put.calls + stats.durable_put.calls,
    )


def folder_bytes(folder: Path) -> tuple[int, int]:
    """Files and bytes under ``folder`` (none if it does not exist)."""
    if not folder.exists():
        return 0, 0
    sizes = [entry.stat().st_size for entry in folder.iterdir()]
    return len(sizes), sum(sizes)


class Writer:
    """A writer subprocess running ``WRITER``; ``items`` holds every key it
    reported stored (so committed) with its size."""

    def __init__(
        self, url: Path | str, count: int, sizes: list[int], then: str, flush_at: int = -1
    ) -> None:
        """``flush_at``: the writer flushes before its put number ``flush_at``."""
        args = [str(url), str(count), json.dumps(sizes), then, str(flush_at)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "ANTHILL_SECRET": SECRET},
        )
        self.items: dict[str, int] = {}
        self.unflushed = -1

    def read_report(self) -> None:
        """Reads the writer's lines up to its unflushed bytes."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if "unflushed" in event:
                self.unflushed = event["unflushed"]
                return
            self.items[event["key"]] = event["size"]
        raise AssertionError(f"the writer ended early: {self.process.wait()}")

    def wait_stopped(self) -> None:
        """Returns once the writer stopped itself (it has reported by then)."""
        _, status = os.waitpid(self.process.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.close_pipes()

    def finish(self, signal_number: int | None = None, line: str | None = None) -> str:
        """Continues (``signal_number``) or answers (``line``) the writer and
        waits for its exit; returns the rest of its output."""
        if signal_number is not None:
            os.kill(self.process.pid, signal_number)
        out, _ = self.process.communicate(line, timeout=120)
        assert self.process.returncode == 0, out
        return out

    def close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def check_items(store: anthill.Store, items: dict[str, int]) -> None:
    """Every item reads back exactly; nothing else is stored."""
    assert sorted(store.keys()) == sorted(items)
    for key, size in items.items():
        assert store.fetch_item(key) == item(key, size), key
    summary = store.summary()
    assert summary.items == len(items)
    assert summary.used_space == sum(items.values())
    assert summary.pending == 0


def open_store(path: Path) -> anthill.Store:
    return anthill.open(str(path), secret=SECRET)


# --- requests and bytes per put ------------------------------------------------


def test_a_loop_of_small_puts_writes_about_their_size_once(tmp_path: Path) -> None:
    """1,000 puts of 1 KiB on the default 4 MiB pads, then close: about one
    write request and at most 4 KiB written per put, write-back included."""
    path = tmp_path / "store"
    store = anthill.open(f"sim+file://{path}", secret=SECRET)
    calls_before, bytes_before, _ = writes(store)
    puts = 1000
    for i in range(puts):
        store.store_item(f"k{i}", item(f"k{i}", KIB))
    store.close()
    calls_after, bytes_after, pad_writes = writes(store)
    requests = calls_after - calls_before
    written = bytes_after - bytes_before
    assert requests <= 1.1 * puts, f"{requests} write requests for {puts} puts"
    assert written <= 4 * KIB * puts, f"{written / puts:.0f} bytes written per 1 KiB put"
    # 1 MiB of items in one 4 MiB pad: written back once at close (more only
    # if the loop ever stood idle long enough for a background write-back).
    assert pad_writes >= 1

    reopened = open_store(path)
    assert reopened.unflushed_bytes() == 0
    check_items(reopened, {f"k{i}": KIB for i in range(puts)})
    reopened.close()


def test_a_small_put_then_flush_writes_its_pad_once(tmp_path: Path) -> None:
    store = anthill.open(f"sim+file://{tmp_path / 'store'}", secret=SECRET)
    for key in ["first", "second"]:  # into a new pad, then into its free space
        _, _, pads_before = writes(store)
        store.store_item(key, item(key, 700))
        _, _, pads_after = writes(store)
        assert pads_after == pads_before, "a small put wrote its pad"
        assert store.unflushed_bytes() == 700
        store.flush()
        calls_flushed, _, pads_flushed = writes(store)
        assert pads_flushed - pads_after == 1, "flush wrote the dirty pad other than once"
        assert store.unflushed_bytes() == 0
        # Nothing left to write: a second flush makes no request at all.
        store.flush()
        assert writes(store)[0] == calls_flushed
    assert store.fetch_item("first") == item("first", 700)
    assert store.fetch_item("second") == item("second", 700)
    store.close()
    assert writes(store)[0] == calls_flushed, "close wrote although nothing was dirty"


async def test_flush_async_leaves_no_dirty_pad(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = open_store(path)
    items = {f"k{i}": 100 + 37 * i for i in range(50)}
    await asyncio.gather(*(store.store_item_async(k, item(k, n)) for k, n in items.items()))
    assert store.unflushed_bytes() == sum(items.values())
    await store.flush_async()
    assert store.unflushed_bytes() == 0
    fresh = open_store(path)
    assert fresh.unflushed_bytes() == 0
    check_items(fresh, items)
    fresh.close()
    store.close()


# --- other processes -----------------------------------------------------------


def test_another_process_reads_a_small_item_at_once(tmp_path: Path) -> None:
    """A reader opened before the puts reads another process's small items
    while that process, stopped, cannot have written them back: from the log."""
    path = tmp_path / "store"
    reader = open_store(path)
    writer = Writer(path, 40, [1, 100, KIB, 3000], then="stop")
    writer.read_report()
    writer.wait_stopped()
    try:
        assert writer.unflushed == sum(writer.items.values())
        for key, size in writer.items.items():
            assert reader.fetch_item(key) == item(key, size), key
        # The reader replayed the items with their bytes: still log-only.
        assert reader.unflushed_bytes() == writer.unflushed
        assert sorted(reader.keys()) == sorted(writer.items)
    finally:
        out = writer.finish(signal.SIGCONT)
    assert json.loads(out) == {"closed": True}
    # The writer's close wrote them back: a fresh open finds nothing log-only.
    fresh = open_store(path)
    assert fresh.unflushed_bytes() == 0
    check_items(fresh, writer.items)
    check_items(reader, writer.items)
    fresh.close()
    reader.close()


def test_a_fresh_open_reads_small_items_of_a_live_writer(tmp_path: Path) -> None:
    """A store opened after another process's small puts, while that process
    still runs and never flushed, reads them; once both are done, nothing is
    left only in the log."""
    path = tmp_path / "store"
    open_store(path).close()
    writer = Writer(path, 40, [1, 100, KIB, 3000], then="wait")
    try:
        writer.read_report()
        with open_store(path) as fresh:
            check_items(fresh, writer.items)
    finally:
        writer.finish(line="exit\n")
    with open_store(path) as after:
        assert after.unflushed_bytes() == 0
        check_items(after, writer.items)


def test_exit_without_close_writes_back(tmp_path: Path) -> None:
    """The interpreter's exit writes back a store left open: the next open
    finds nothing log-only."""
    path = tmp_path / "store"
    writer = Writer(path, 30, [10, KIB, 5000], then="exit")
    writer.read_report()
    writer.finish()
    assert writer.unflushed > 0
    with open_store(path) as store:
        assert store.unflushed_bytes() == 0
        check_items(store, writer.items)


def test_sigkill_with_dirty_pads_loses_nothing_committed(tmp_path: Path) -> None:
    """A writer SIGKILLed while its pads hold unflushed items (it flushed
    half-way, so some items are in pads and the later ones only in the log):
    a fresh open reads every committed item exactly, and its close writes
    them back."""
    path = tmp_path / "store"
    # Up to 200 KiB items (log-first below 256 KiB).
    sizes = [1, 100, KIB, 5000, 60_000, 200_000]
    writer = Writer(path, 120, sizes, then="stop", flush_at=60)
    writer.read_report()
    writer.wait_stopped()
    writer.kill()
    assert writer.unflushed > 0, "the writer held nothing unflushed when killed"
    assert writer.unflushed < sum(writer.items.values()), "the flush wrote nothing back"

    store = open_store(path)
    assert store.unflushed_bytes() == writer.unflushed
    check_items(store, writer.items)
    store.close()
    with open_store(path) as fresh:
        assert fresh.unflushed_bytes() == 0
        check_items(fresh, writer.items)


B_SCRIPT = r"""
import json, random, sys
import anthill
store = anthill.open(sys.argv[1])
stats = lambda: store.backend_stats().put.calls + store.backend_stats().durable_put.calls
before, found = stats(), store.unflushed_bytes()
store.store_item("from-b", random.Random("from-b").randbytes(500))
store.close()
print(json.dumps({"found": found, "pad_writes": stats() - before}))
"""


def run_b(url: str) -> dict[str, int]:
    """Process B: opens ``url``, stores one small item, closes; reports the
    unflushed bytes it found and the pad writes it made."""
    b = subprocess.run(
        [sys.executable, "-c", B_SCRIPT, url],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
        timeout=120,
    )
    assert b.returncode == 0, b.stderr
    report: dict[str, int] = json.loads(b.stdout)
    return report


def test_a_writer_taking_over_writes_back_what_a_killed_one_left(tmp_path: Path) -> None:
    """Process A commits small items and is SIGKILLed with them unflushed;
    process B opens, stores one small item and closes: B wrote A's pad back,
    once, together with its own item."""
    path = tmp_path / "store"
    url = f"sim+file://{path}"
    a = Writer(url, 100, [KIB], then="stop")
    a.read_report()
    a.wait_stopped()
    a.kill()
    assert a.unflushed == 100 * KIB

    report = run_b(url)
    assert report["found"] == a.unflushed
    # 100 KiB of A and B's item share one 4 MiB pad: one write holds them.
    assert report["pad_writes"] == 1

    with open_store(path) as fresh:
        assert fresh.unflushed_bytes() == 0
        check_items(fresh, {**a.items, "from-b": 500})


def test_a_folder_store_taken_over_through_sim_writes_back(tmp_path: Path) -> None:
    """The same takeover when A wrote the folder directly and B opens it
    through ``sim+file://``: A's pad was reserved without a file (a folder
    pad is created by its first write), and B must still write it back."""
    path = tmp_path / "store"
    a = Writer(path, 100, [KIB], then="stop")
    a.read_report()
    a.wait_stopped()
    a.kill()
    assert a.unflushed == 100 * KIB

    report = run_b(f"sim+file://{path}")
    assert report["found"] == a.unflushed
    assert report["pad_writes"] == 1
    with open_store(path) as fresh:
        assert fresh.unflushed_bytes() == 0
        check_items(fresh, {**a.items, "from-b": 500})


def test_flush_of_a_reader_writes_back_what_a_killed_writer_left(tmp_path: Path) -> None:
    """``flush()`` on a store that stored nothing itself still writes back
    what the log alone holds."""
    path = tmp_path / "store"
    a = Writer(path, 20, [KIB, 3000], then="stop")
    a.read_report()
    a.wait_stopped()
    a.kill()
    store = open_store(path)
    assert store.unflushed_bytes() == a.unflushed > 0
    store.flush()
    assert store.unflushed_bytes() == 0
    with open_store(path) as fresh:
        assert fresh.unflushed_bytes() == 0
        check_items(fresh, a.items)
    store.close()


# --- checkpoints -----------------------------------------------------------------


def test_checkpoints_hold_no_item_data(tmp_path: Path) -> None:
    """Enough small items for a checkpoint (the log's item bytes pass 32 MiB):
    every checkpoint is smaller than one item, and what it absorbed reads
    back from the pads."""
    path = tmp_path / "store"
    size = 200 * KIB  # log-first: at most 256 KiB with 4 MiB pads
    count = 180  # 36 MiB of incompressible item bytes through the log
    store = open_store(path)
    for i in range(count):
        store.store_item(f"k{i}", item(f"k{i}", size))
    store.close()
    checkpoints, checkpoint_bytes = folder_bytes(path / "c")
    assert checkpoints >= 1, "no checkpoint was written"
    largest = max(entry.stat().st_size for entry in (path / "c").iterdir())
    assert largest < size, f"a {largest}-byte checkpoint holds item data"
    assert checkpoint_bytes < count * size // 100
    with open_store(path) as fresh:
        assert fresh.unflushed_bytes() == 0
        check_items(fresh, {f"k{i}": size for i in range(count)})


# --- events ----------------------------------------------------------------------


def test_events_of_a_small_put(make_store: Any) -> None:
    store = make_store()  # 4 KiB pads: items of at most 256 bytes go log-first
    store.store_item("first", b"x" * 100)  # reserves the pad
    recorder = Recorder()
    store.store_item("second", b"y" * 200, callback=recorder)
    assert recorder.events == [
        anthill.StartingUpload(total_bytes=200, total_pads=0),
        anthill.UploadProgress(bytes_written=200, total_bytes=200),
        anthill.UploadFinished(),
        anthill.StoreComplete(),
    ]
    assert store.unflushed_bytes() == 300
    assert store.fetch_item("second") == b"y" * 200


@pytest.mark.parametrize("stop_at", [anthill.StartingUpload, anthill.UploadFinished])
def test_cancelling_a_small_put_leaves_the_key_absent(make_store: Any, stop_at: type) -> None:
    store = make_store()
    store.store_item("first", b"x" * 100)
    before = store.summary()

    def callback(event: object) -> bool:
        return not isinstance(event, stop_at)

    with pytest.raises(anthill.OperationCancelledError):
        store.store_item("second", b"y" * 200, callback=callback)
    assert "second" not in store
    assert store.summary() == before
    assert store.unflushed_bytes() == 100
    # The space is free again: the same put now succeeds, in the same pad.
    store.store_item("second", b"y" * 200)
    assert store.summary().total_pads == before.total_pads
    store.flush()
    assert store.unflushed_bytes() == 0
    assert store.fetch_item("second") == b"y" * 200


async def test_events_of_a_small_async_put(make_store: Any) -> None:
    store = make_store()
    await store.store_item_async("first", b"x" * 100)
    recorder = Recorder()
    await store.store_item_async("second", b"y" * 200, callback=recorder)
    assert recorder.names() == [
        "StartingUpload",
        "UploadProgress",
        "UploadFinished",
        "StoreComplete",
    ]
    assert recorder.events[0] == anthill.StartingUpload(total_bytes=200, total_pads=0)
