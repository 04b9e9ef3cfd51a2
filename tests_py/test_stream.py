"""Items larger than memory: store_file, fetch_file, open_item, fetch_range
(round trips through paths, file objects and pipes, seeks, the bad inputs,
a kill during fetch_file, and the memory bound measured in a subprocess)."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthill
import pytest
from conftest import PAD_SIZE, SECRET, Recorder, settle_interrupted

# Sizes around the interesting boundaries with 4 KiB pads: empty, log-first
# (at most a sixteenth of a pad), one pad, several pads and a partial one.
SIZES = [0, 100, PAD_SIZE, 3 * PAD_SIZE + 17, 40 * PAD_SIZE + 5]


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def folder_store(make_store: Callable[..., anthill.Store], tmp_path: Path) -> anthill.Store:
    return make_store(f"file://{tmp_path / 'store'}")


@pytest.mark.parametrize("size", SIZES)
def test_a_file_round_trips_by_path(store: anthill.Store, tmp_path: Path, size: int) -> None:
    data = data_of(size, size)
    store.store_file("k", write(tmp_path / "in.bin", data))
    assert store.fetch_item("k") == data
    out = tmp_path / "out.bin"
    assert store.fetch_file("k", out) == size
    assert out.read_bytes() == data
    # No temporary file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.bin"]


@pytest.mark.parametrize("size", SIZES)
def test_a_file_round_trips_through_file_objects(
    folder_store: anthill.Store, tmp_path: Path, size: int
) -> None:
    data = data_of(size, size + 1)
    path = write(tmp_path / "in.bin", b"header" + data)
    with path.open("rb") as source:
        source.read(6)  # read from the current position on
        folder_store.store_file("k", source)
        assert source.tell() == 6 + size
    folder_store.store_file("k2", io.BytesIO(data))  # no descriptor: spooled
    sink = io.BytesIO()
    assert folder_store.fetch_file("k", sink) == size
    assert sink.getvalue() == data
    assert folder_store.fetch_item("k2") == data


def test_a_pipe_round_trips(folder_store: anthill.Store) -> None:
    size = 25 * PAD_SIZE + 3
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import random, sys; sys.stdout.buffer.write(random.Random(7).randbytes({size}))",
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    recorder = Recorder()
    folder_store.store_file("piped", child.stdout, callback=recorder)
    assert child.wait() == 0
    assert folder_store.fetch_item("piped") == data_of(size, 7)
    # The confirmation states the exact size, known before any pad is reserved.
    (confirm,) = recorder.of(anthill.ConfirmReservation)
    assert confirm.data_size == size


def test_a_named_pipe_round_trips_by_path(folder_store: anthill.Store, tmp_path: Path) -> None:
    size = 9 * PAD_SIZE + 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import random, sys; "
                f"open(sys.argv[1], 'wb').write(random.Random(8).randbytes({size}))"
            ),
            str(fifo),
        ]
    )
    folder_store.store_file("fifo", fifo)
    assert child.wait() == 0
    assert folder_store.fetch_item("fifo") == data_of(size, 8)


def test_store_file_and_fetch_file_emit_the_events_of_store_item_and_fetch_item(
    make_store: Callable[..., anthill.Store], tmp_path: Path
) -> None:
    data = data_of(10 * PAD_SIZE, 3)
    by_item, by_file = make_store(), make_store()
    put_item, put_file = Recorder(), Recorder()
    by_item.store_item("k", data, callback=put_item)
    by_file.store_file("k", write(tmp_path / "in", data), callback=put_file)
    # The same events (their interleaving depends on how reservations and
    # uploads overlap), from the confirmation to StoreComplete.
    assert sorted(put_file.names()) == sorted(put_item.names())
    assert put_file.names()[0] == "ConfirmReservation"
    assert put_file.names()[-1] == "StoreComplete"
    get_item, get_file = Recorder(), Recorder()
    by_item.fetch_item("k", callback=get_item)
    by_file.fetch_file("k", tmp_path / "out", callback=get_file)
    assert get_file.names()[0] == "StartingDownload"
    assert get_file.names()[-1] == "DownloadFinished"
    assert set(get_file.names()) == set(get_item.names())
    progress = get_file.of(anthill.DownloadProgress)
    assert progress[-1].bytes_read == len(data)
    assert [p.bytes_read for p in progress] == sorted(p.bytes_read for p in progress)


def test_the_async_twins(store: anthill.Store, tmp_path: Path) -> None:
    data = data_of(12 * PAD_SIZE + 9, 4)

    async def main() -> tuple[bytes, int, bytes]:
        await store.store_file_async("k", write(tmp_path / "in", data))
        written = await store.fetch_file_async("k", tmp_path / "out")
        piece = await store.fetch_range_async("k", PAD_SIZE - 3, 10)
        return (tmp_path / "out").read_bytes(), written, piece

    out, written, piece = asyncio.run(main())
    assert (out, written, piece) == (data, len(data), data[PAD_SIZE - 3 : PAD_SIZE + 7])


def test_fetch_range_reads_ranges_and_refuses_ranges_outside_the_item(
    store: anthill.Store,
) -> None:
    data = data_of(9 * PAD_SIZE + 100, 5)
    store.store_item("k", data)
    store.store_item("small", b"0123456789")
    rng = random.Random(1)
    for _ in range(50):
        offset = rng.randrange(len(data) + 1)
        length = rng.randrange(len(data) - offset + 1)
        assert store.fetch_range("k", offset, length) == data[offset : offset + length]
    assert store.fetch_range("small", 3, 4) == b"3456"
    assert store.fetch_range("k", len(data), 0) == b""
    for offset, length in [(-1, 1), (0, -1), (len(data), 1), (len(data) - 5, 6), (2**63, 1)]:
        with pytest.raises(anthill.InvalidInputError):
            store.fetch_range("k", offset, length)
    with pytest.raises(anthill.InvalidInputError):
        store.fetch_range("small", 8, 3)
    with pytest.raises(anthill.KeyNotFoundError):
        store.fetch_range("absent", 0, 1)


def test_a_small_range_of_a_large_item_reads_at_most_two_pads(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store(f"sim+memory://t-{uuid.uuid4().hex}")
    data = data_of(200 * PAD_SIZE, 6)
    store.store_item("big", data)
    for offset in [0, 77 * PAD_SIZE - 512, 150 * PAD_SIZE + 3000]:
        stats = store.backend_stats()
        assert stats is not None
        before = stats.get.calls
        assert store.fetch_range("big", offset, 1024) == data[offset : offset + 1024]
        stats = store.backend_stats()
        assert stats is not None
        assert stats.get.calls - before <= 2


def test_open_item_seeks_in_every_direction(store: anthill.Store) -> None:
    data = data_of(30 * PAD_SIZE + 11, 8)
    store.store_item("k", data)
    rng = random.Random(2)
    with store.open_item("k") as reader:
        assert isinstance(reader, io.BufferedIOBase)
        assert reader.size == len(data)
        assert reader.readable() and reader.seekable() and not reader.writable()
        expected = 0
        for _ in range(300):
            whence = rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
            target = rng.randrange(len(data) + 10)
            offset = {
                os.SEEK_SET: target,
                os.SEEK_CUR: target - expected,
                os.SEEK_END: target - len(data),
            }[whence]
            assert reader.seek(offset, whence) == target
            expected = target
            length = rng.choice([0, 1, 100, PAD_SIZE, 3 * PAD_SIZE + 5])
            chunk = reader.read(length)
            assert chunk == data[expected : expected + length]
            expected += len(chunk)
            assert reader.tell() == expected
        reader.seek(0)
        assert reader.read() == data
        assert reader.read(10) == b""
        with pytest.raises(ValueError):
            reader.seek(-1)
        buffer = bytearray(50)
        reader.seek(PAD_SIZE - 20)
        assert reader.readinto(buffer) == 50
        assert bytes(buffer) == data[PAD_SIZE - 20 : PAD_SIZE + 30]
    with pytest.raises(ValueError):
        reader.read(1)


def test_open_item_feeds_zipfile_and_tarfile(store: anthill.Store) -> None:
    files = {f"file{i}.bin": data_of(1000 * i + 7, i) for i in range(1, 8)}
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    store.store_item("a.zip", packed.getvalue())
    with store.open_item("a.zip") as reader, zipfile.ZipFile(reader) as archive:
        assert sorted(archive.namelist()) == sorted(files)
        for name, content in files.items():
            assert archive.read(name) == content
        assert archive.testzip() is None

    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    store.store_item("a.tar", packed.getvalue())
    with store.open_item("a.tar") as reader, tarfile.open(fileobj=reader, mode="r:") as archive:
        for name, content in files.items():
            member = archive.extractfile(name)
            assert member is not None
            assert member.read() == content


def test_open_item_feeds_pandas(store: anthill.Store) -> None:
    import pandas

    frame = pandas.DataFrame({"n": range(5000), "square": [i * i for i in range(5000)]})
    store.store_item("table.csv", frame.to_csv(index=False).encode())
    with store.open_item("table.csv") as reader:
        back = pandas.read_csv(reader)
    assert back.equals(frame)


def test_a_cancelled_fetch_file_async_leaves_no_file(store: anthill.Store, tmp_path: Path) -> None:
    store.store_item("k", data_of(30 * PAD_SIZE, 15))
    out = tmp_path / "out"

    async def main() -> None:
        started = asyncio.Event()

        async def on_event(event: Any) -> None:
            if isinstance(event, anthill.DownloadProgress):
                started.set()
                await asyncio.Event().wait()  # stalls until cancelled

        task = asyncio.ensure_future(store.fetch_file_async("k", out, callback=on_event))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    store.fetch_item("k")  # the store is still usable
    assert not out.exists()
    # The dropped call removes its temporary file as its last write ends.
    for _ in range(500):
        if not any(p.name.endswith(".anthill-part") for p in tmp_path.iterdir()):
            break
        time.sleep(0.01)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_open_item_of_a_small_item_in_the_log(store: anthill.Store) -> None:
    store.store_item("small", b"hello, world")
    assert store.unflushed_bytes() > 0
    with store.open_item("small") as reader:
        reader.seek(7)
        assert reader.read() == b"world"


def test_a_reader_of_a_replaced_item_does_not_return_the_new_bytes(
    store: anthill.Store,
) -> None:
    old, new = data_of(20 * PAD_SIZE, 1), data_of(20 * PAD_SIZE, 2)
    store.store_item("k", old)
    with store.open_item("k") as reader:
        assert reader.read(10) == old[:10]
        store.store_item("k", new, overwrite=True)
        store.store_item("filler", data_of(40 * PAD_SIZE, 3))  # reuses the old space
        reader.seek(5 * PAD_SIZE)
        try:
            chunk = reader.read(PAD_SIZE)
        except (anthill.IntegrityError, anthill.KeyNotFoundError):
            pass
        else:
            assert chunk == old[5 * PAD_SIZE : 6 * PAD_SIZE]


def test_a_reader_follows_its_item_when_a_compaction_moves_it(store: anthill.Store) -> None:
    # Pad 0: f and k; pad 1: h. Once f is removed, pad 0 is the least used
    # and k fits in pad 1's free space: the compaction moves k, and pad 0,
    # left empty, is released.
    store.store_item("f", data_of(3000, 30))
    data = data_of(1000, 31)
    store.store_item("k", data)
    store.store_item("h", data_of(2000, 32))
    assert store.summary().total_pads == 2
    with store.open_item("k") as reader:  # where k lies is known from here on
        store.remove_item("f")
        report = store.compact()
        assert report.items_moved == 1
        assert report.pads_after == 1
        # A new item takes the space the compaction freed (a whole pad: the
        # released one, if the backend keeps it, or a new one).
        store.store_item("new", data_of(PAD_SIZE, 40))
        reader.seek(0)
        assert reader.read() == data
    assert store.fetch_range("k", 5, 300) == data[5:305]


def test_bad_sources_are_clear_errors(store: anthill.Store, tmp_path: Path) -> None:
    with pytest.raises(anthill.InvalidInputError, match="directory"):
        store.store_file("k", tmp_path)
    with pytest.raises(anthill.InvalidInputError):
        store.store_file("k", tmp_path / "missing")
    path = write(tmp_path / "f", b"x" * 100)
    with path.open("rb") as closed:
        pass
    with pytest.raises(anthill.InvalidInputError, match="closed"):
        store.store_file("k", closed)
    with path.open("r") as text, pytest.raises(anthill.InvalidInputError, match="binary"):
        store.store_file("k", text)
    with pytest.raises(anthill.InvalidInputError):
        store.store_file("k", 42)  # type: ignore[arg-type]
    with pytest.raises(anthill.InvalidInputError):
        store.fetch_file("k", 42)  # type: ignore[arg-type]
    store.store_item("stored", b"z" * 5000)
    with pytest.raises(anthill.InvalidInputError, match="directory"):
        store.fetch_file("stored", tmp_path)
    with pytest.raises(anthill.InvalidInputError):
        store.fetch_file("stored", tmp_path / "no-such-folder" / "out")
    with (tmp_path / "ro").open("wb") as closed_dest:
        pass
    with pytest.raises(anthill.InvalidInputError, match="closed"):
        store.fetch_file("stored", closed_dest)
    assert "k" not in store
    assert store.summary().pending == 0


class _ShortReader(io.RawIOBase):
    """A stream whose read fails half-way, as a broken pipe would."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 3:
            raise OSError("connection reset")
        return b"y" * 1000


def test_a_stream_failing_half_way_stores_nothing(store: anthill.Store) -> None:
    with pytest.raises(anthill.InvalidInputError, match="connection reset"):
        store.store_file("k", _ShortReader())
    assert "k" not in store
    assert store.summary().pending == 0


@pytest.mark.parametrize("change", ["grow", "shrink", "rewrite"])
def test_a_file_changing_while_stored_is_refused(
    folder_store: anthill.Store, tmp_path: Path, change: str
) -> None:
    data = data_of(30 * PAD_SIZE, 9)
    path = write(tmp_path / "in", data)
    stat = path.stat()

    def meddle(event: Any) -> None:
        if isinstance(event, anthill.StartingUpload):
            if change == "grow":
                with path.open("ab") as f:
                    f.write(b"more")
            elif change == "shrink":
                os.truncate(path, len(data) // 2)
            else:
                with path.open("r+b") as f:
                    f.write(b"Z" * 10)
                # A different modification time, whatever the clock's grain.
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    with pytest.raises(anthill.InvalidInputError, match="changed while"):
        folder_store.store_file("k", path, callback=meddle)
    # Absent, or pending (never half present); a pending upload is discarded.
    settle_interrupted(folder_store, "k")
    with pytest.raises(anthill.KeyNotFoundError):
        folder_store.fetch_item("k")


_INTERRUPTED_FILE_PUT = textwrap.dedent(
    """
    import asyncio, sys
    import anthill

    store = anthill.open(sys.argv[1], secret=sys.argv[2], pad_size=int(sys.argv[3]))

    async def stop_once_pending(event):
        # Suspends the put (an async callback) once its pending record is written.
        if isinstance(event, anthill.ScratchpadCommitComplete) and event.index == event.total:
            while (await store.summary_async()).pending == 0:
                await asyncio.sleep(0.01)
            print("pending", flush=True)
            await asyncio.Event().wait()  # until killed

    async def main():
        await store.store_file_async("k", sys.argv[4], callback=stop_once_pending)

    asyncio.run(main())
    """
)


def test_an_interrupted_file_put_resumes(tmp_path: Path) -> None:
    data = data_of(40 * PAD_SIZE + 1, 10)
    path = write(tmp_path / "in", data)
    url = f"sim+file://{tmp_path}/store"
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_FILE_PUT, url, SECRET, str(PAD_SIZE), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "pending\n", "the child stopped early"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()

    with anthill.open(url, secret=SECRET, pad_size=PAD_SIZE) as store:
        assert store.summary().pending == 1
        with pytest.raises(anthill.UploadPendingError):
            store.store_file("k", path)
        other = write(tmp_path / "other", data_of(len(data), 11))
        with pytest.raises(anthill.InvalidInputError, match="same data"):
            store.store_file("k", other, resume=True)
        before = store.backend_stats()
        assert before is not None
        store.store_file("k", path, resume=True)
        assert store.fetch_item("k") == data
        assert store.summary().pending == 0
        after = store.backend_stats()
        assert after is not None
        assert after.put.calls == before.put.calls, "no pad uploaded again"


def test_cancelled_fetch_file_leaves_no_file(store: anthill.Store, tmp_path: Path) -> None:
    store.store_item("k", data_of(20 * PAD_SIZE, 12))
    out = tmp_path / "out"
    with pytest.raises(anthill.OperationCancelledError):
        store.fetch_file("k", out, callback=lambda e: not isinstance(e, anthill.DownloadProgress))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(anthill.KeyNotFoundError):
        store.fetch_file("absent", out)
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_keeps_the_owner_and_mode_of_the_file_it_replaces(
    store: anthill.Store, tmp_path: Path
) -> None:
    data = data_of(3 * PAD_SIZE, 13)
    store.store_item("k", data)
    previous = os.umask(0o022)
    try:
        dest = tmp_path / "private"
        dest.write_bytes(b"old")
        dest.chmod(0o640)
        owner = (4321, 4321) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        os.chown(dest, *owner)
        seen: list[tuple[int, int, int, int]] = []

        def look(event: anthill.GetEvent) -> None:
            # The file beside dest, before any byte of the item is in it.
            if isinstance(event, anthill.StartingDownload):
                (part,) = [p for p in tmp_path.iterdir() if p.name.endswith(".anthill-part")]
                st = part.stat()
                seen.append((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size))

        store.fetch_file("k", dest, callback=look)
        assert seen == [(0o640, *owner, 0)]
        st = dest.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, *owner)
        assert dest.read_bytes() == data
        # A new file has the mode the umask gives.
        fresh = tmp_path / "fresh"
        store.fetch_file("k", fresh)
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    finally:
        os.umask(previous)


_KILLED_FETCH = textwrap.dedent(
    """
    import sys, time, anthill
    store = anthill.open(sys.argv[1], secret=sys.argv[2])
    def stall(event):
        if isinstance(event, anthill.DownloadProgress):
            print("writing", flush=True)
            while True:
                time.sleep(60)
    store.fetch_file("k", sys.argv[3], callback=stall)
    """
)


def test_a_killed_fetch_file_leaves_no_file_at_dest(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    with anthill.open(url, secret=SECRET, pad_size=PAD_SIZE) as store:
        store.store_item("k", data_of(50 * PAD_SIZE, 13))
    dest = tmp_path / "out" / "restored.bin"
    dest.parent.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_FETCH, url, SECRET, str(dest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "writing\n"  # bytes are being written
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not dest.exists()
    # What it leaves is a hidden temporary file, never the destination.
    assert all(p.name.endswith(".anthill-part") for p in dest.parent.iterdir())


_INTERRUPTED_FETCH = textwrap.dedent(
    """
    import sys, anthill
    store = anthill.open(sys.argv[1], secret=sys.argv[2], download_concurrency=2)
    try:
        store.fetch_file("k", sys.argv[3])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("finished", flush=True)
    """
)


def test_ctrl_c_during_fetch_file_leaves_no_file(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with anthill.open(f"file://{folder}", secret=SECRET, pad_size=PAD_SIZE) as store:
        store.store_item("k", data_of(200 * PAD_SIZE, 16))
    # Slow reads (50 ms each, 2 at a time): the fetch takes seconds.
    url = f"sim+file://{folder}?latency_ms=50"
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    dest = out_folder / "restored.bin"
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_FETCH, url, SECRET, str(dest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    # Interrupt once the temporary file exists: the fetch is under way.
    for _ in range(3000):
        if any(out_folder.iterdir()) or child.poll() is not None:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline() == "interrupted\n"
    assert child.wait() == 3
    assert list(out_folder.iterdir()) == []


def _cli(*args: str, stdin: Any = None, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "anthill", *args],
        stdin=stdin,
        capture_output=True,
        env=env,
        check=False,
    )


def test_the_cli_streams_from_a_pipe_and_to_a_file_or_stdout(tmp_path: Path) -> None:
    env = {**os.environ, "ANTHILL_STORE": f"file://{tmp_path / 'store'}", "ANTHILL_SECRET": SECRET}
    data = data_of(3 << 20, 14)
    source = write(tmp_path / "in", data)
    with source.open("rb") as stdin:
        put = _cli("put", "k", "-", "--yes", stdin=stdin, env=env)
    assert put.returncode == 0, put.stderr
    got = _cli("get", "k", "-o", str(tmp_path / "out"), env=env)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out").read_bytes() == data
    to_stdout = _cli("get", "k", env=env)
    assert to_stdout.returncode == 0
    assert to_stdout.stdout == data
    by_path = _cli("put", "k2", str(source), "--yes", env=env)
    assert by_path.returncode == 0, by_path.stderr
    missing = _cli("get", "absent", "-o", str(tmp_path / "none"), env=env)
    assert missing.returncode == 1
    assert not (tmp_path / "none").exists()


_MEASURE_RSS = textwrap.dedent(
    """
    import os, resource, sys, anthill
    url, secret, source, dest = sys.argv[1:5]
    store = anthill.open(url, secret=secret)
    store.store_item("warm-up", b"x" * (8 << 20))   # the runtime and its pools
    store.fetch_item("warm-up")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.store_file("big", source)
    after_put = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    written = store.fetch_file("big", dest)
    after_get = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with store.open_item("big") as reader:
        while reader.read(8 << 20):
            pass
    after_reader = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.close()
    print(baseline, after_put, after_get, after_reader, written)
    """
)


def test_storing_and_fetching_a_large_file_runs_in_bounded_memory(tmp_path: Path) -> None:
    size = 1 << 30
    source = tmp_path / "big.bin"
    with source.open("wb") as f:  # sparse but for a few marked places
        for at in range(0, size, 64 << 20):
            f.seek(at)
            f.write(at.to_bytes(8, "little") * 512)
        f.truncate(size)
    dest = tmp_path / "restored.bin"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE_RSS,
            f"file://{tmp_path / 'store'}",
            SECRET,
            str(source),
            str(dest),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline, after_put, after_get, after_reader, written = map(int, result.stdout.split())
    assert written == size
    # ru_maxrss is in KiB: each phase stays well under the item's 1 GiB.
    for peak in (after_put, after_get, after_reader):
        assert (peak - baseline) * 1024 < 300 << 20, (baseline, after_put, after_get, after_reader)
    with source.open("rb") as a, dest.open("rb") as b:
        while True:
            chunk = a.read(16 << 20)
            assert chunk == b.read(16 << 20)
            if not chunk:
                break
