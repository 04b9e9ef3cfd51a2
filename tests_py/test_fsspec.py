"""anthill as an fsspec filesystem: fsspec's own abstract test suite, then
what it does not cover (directories implied by keys, errors, reads that do
not refetch, pickling, pandas through ``anthill://``).

fsspec's abstract suite (``fsspec.tests.abstract``) runs here in full:
copy, get, put, open and pipe. Its move tests (``fsspec/tests/abstract/mv.py``)
are no abstract class but two functions hard-wired to the local filesystem
(moving into a missing folder must fail; moving into a read-only folder must
raise PermissionError); neither applies to a store whose directories are
implied by keys and which has no permissions, so :class:`TestAnthillMove`
checks what ``mv`` must do here instead.
"""

from __future__ import annotations

import io
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthill
import fsspec
import pytest
from anthill.fsspec import AnthillFileSystem
from conftest import PAD_SIZE, SECRET
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)


def new_filesystem(url: str | None = None) -> AnthillFileSystem:
    """A filesystem on a fresh memory store, made as users make it: by
    protocol name, through the ``fsspec.specs`` entry point."""
    url = url or f"memory://fsspec-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("anthill", store=url, secret=SECRET, pad_size=PAD_SIZE)
    assert isinstance(fs, AnthillFileSystem)
    return fs


class AnthillFixtures(AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self) -> Iterator[AnthillFileSystem]:
        fs = new_filesystem()
        yield fs
        fs.store.close()
        AnthillFileSystem.clear_instance_cache()

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self) -> str:
        return "root"

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        # A directory exists while a key lies below it.
        return False


class TestAnthillCopy(AbstractCopyTests, AnthillFixtures):  # type: ignore[misc]
    pass


class TestAnthillGet(AbstractGetTests, AnthillFixtures):  # type: ignore[misc]
    pass


class TestAnthillPut(AbstractPutTests, AnthillFixtures):  # type: ignore[misc]
    pass


class TestAnthillOpen(AbstractOpenTests, AnthillFixtures):  # type: ignore[misc]
    pass


class TestAnthillPipe(AbstractPipeTests, AnthillFixtures):  # type: ignore[misc]
    pass


class TestAnthillMove(AnthillFixtures):
    def test_move_file(self, fs: AnthillFileSystem) -> None:
        fs.pipe_file("a/file", b"data")
        fs.mv("a/file", "b/renamed")
        assert fs.cat_file("b/renamed") == b"data"
        assert not fs.exists("a/file") and not fs.exists("a")
        assert list(fs.store.keys()) == ["b/renamed"]

    def test_move_directory(self, fs: AnthillFileSystem) -> None:
        fs.pipe({"src/x": b"1", "src/sub/y": b"2", "other": b"3"})
        fs.mv("src", "dst", recursive=True)
        assert sorted(fs.store) == ["dst/sub/y", "dst/x", "other"]
        assert fs.cat(["dst/x", "dst/sub/y"]) == {"dst/x": b"1", "dst/sub/y": b"2"}

    def test_move_onto_existing_file_replaces_it(self, fs: AnthillFileSystem) -> None:
        fs.pipe({"a": b"new", "b": b"old"})
        fs.mv("a", "b")
        assert list(fs.store.keys()) == ["b"]
        assert fs.cat_file("b") == b"new"

    def test_move_missing_raises(self, fs: AnthillFileSystem) -> None:
        with pytest.raises(FileNotFoundError):
            fs.mv("missing", "somewhere")
        assert len(fs.store) == 0


# --- directories implied by keys ----------------------------------------------


@pytest.fixture
def fs() -> Iterator[AnthillFileSystem]:
    fs = new_filesystem()
    yield fs
    fs.store.close()
    AnthillFileSystem.clear_instance_cache()


def test_keys_with_slashes_are_paths(fs: AnthillFileSystem) -> None:
    fs.pipe({"a/b/c": b"123", "a/d": b"4", "e": b""})
    assert fs.ls("", detail=False) == ["a", "e"]
    assert fs.ls("a", detail=False) == ["a/b", "a/d"]
    assert fs.ls("anthill://a/b/", detail=False) == ["a/b/c"]
    assert fs.info("a/b/c") == {
        "name": "a/b/c",
        "size": 3,
        "type": "file",
        "created": fs.info("a/b/c")["created"],
        "modified": fs.info("a/b/c")["modified"],
    }
    assert fs.info("a/b") == {"name": "a/b", "size": 0, "type": "directory"}
    assert fs.isdir("a") and fs.isdir("") and not fs.isdir("a/d")
    assert fs.isfile("a/d") and not fs.isfile("a")
    assert fs.find("") == ["a/b/c", "a/d", "e"]
    assert fs.find("a", withdirs=True) == ["a", "a/b", "a/b/c", "a/d"]
    assert fs.find("", maxdepth=1) == ["e"]
    assert fs.glob("a/*") == ["a/b", "a/d"]
    assert fs.glob("**/c") == ["a/b/c"]
    assert list(fs.walk("")) == [("", ["a"], ["e"]), ("a", ["b"], ["d"]), ("a/b", [], ["c"])]
    assert fs.du("a") == 4
    assert fs.exists("a/b") and not fs.exists("a/x") and not fs.exists("a/b/c/d")


def test_directories_need_no_storage(fs: AnthillFileSystem) -> None:
    fs.makedirs("empty/dir", exist_ok=True)
    fs.mkdir("another")
    assert len(fs.store) == 0
    assert not fs.exists("empty")
    fs.pipe_file("d/f", b"x")
    with pytest.raises(FileExistsError):
        fs.makedirs("d")
    with pytest.raises(OSError):
        fs.rmdir("d")
    fs.rm_file("d/f")
    assert not fs.exists("d")


def test_rm(fs: AnthillFileSystem) -> None:
    fs.pipe({"t/a": b"1", "t/s/b": b"2", "t/s/c": b"3", "u": b"4"})
    with pytest.raises(IsADirectoryError):
        fs.rm("t")
    assert len(fs.store) == 4
    fs.rm("t/s", recursive=True)
    assert list(fs.store.keys()) == ["t/a", "u"]
    fs.rm(["t/a", "u"])
    assert len(fs.store) == 0
    with pytest.raises(FileNotFoundError):
        fs.rm("t/a")


# --- errors --------------------------------------------------------------------


def test_missing_and_existing_items_are_os_errors(fs: AnthillFileSystem) -> None:
    for call in (
        lambda: fs.cat_file("nope"),
        lambda: fs.open("nope", "rb"),
        lambda: fs.info("nope"),
        lambda: fs.ls("nope"),
        lambda: fs.rm_file("nope"),
        lambda: fs.cp_file("nope", "there"),
    ):
        with pytest.raises(FileNotFoundError):
            call()
    fs.pipe_file("here", b"1")
    with pytest.raises(FileExistsError):
        fs.pipe_file("here", b"2", mode="create")
    with pytest.raises(FileExistsError):
        fs.open("here", "xb")
    assert fs.cat_file("here") == b"1"


def test_a_lost_pad_is_a_backend_error_not_a_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    fs = AnthillFileSystem(store=folder.as_uri(), pad_size=PAD_SIZE)
    fs.pipe_file("k", b"x" * 10_000)
    shutil.rmtree(folder / "p")  # the folder backend keeps its pads there
    with pytest.raises(anthill.BackendError) as caught:
        fs.cat_file("k")
    assert not isinstance(caught.value, OSError)
    assert fs.exists("k")


def test_other_failures_stay_anthill_errors(fs: AnthillFileSystem) -> None:
    url = fs.store.url
    fs.pipe_file("k", b"secret data")
    with pytest.raises(anthill.IntegrityError):
        fsspec.filesystem("anthill", store=url, secret="another secret")
    with pytest.raises(anthill.InvalidInputError):
        fs.pipe_file("k", "not bytes")


# --- files ----------------------------------------------------------------------


def test_ranged_reads(fs: AnthillFileSystem) -> None:
    data = bytes(range(256)) * 100
    fs.pipe_file("blob", data)
    assert fs.cat_file("blob", 10, 20) == data[10:20]
    assert fs.cat_file("blob", -5) == data[-5:]
    assert fs.cat_file("blob", 25_000, 99_999) == data[25_000:]
    assert fs.read_block("blob", 1000, 500) == data[1000:1500]
    with fs.open("blob", "rb") as f:
        assert f.size == len(data)
        f.seek(300)
        assert f.read(10) == data[300:310]
        f.seek(-10, io.SEEK_END)
        assert f.read() == data[-10:]


def test_ranged_reads_fetch_about_the_range(make_store: Callable[..., anthill.Store]) -> None:
    """``cat_file`` with a range, and the reads of an open file, fetch the pad
    segments under what they read, not the item: a fresh handle on 4 MiB
    pads reads 1 KiB of a 3 MiB item for at most 1 KiB + 128 KiB."""
    url = f"sim+memory://fsspec-{uuid.uuid4().hex}"
    data = bytes(range(256)) * (3 * 4096)
    writer = make_store(url, pad_size=4 << 20)
    writer.store_item("blob", data)
    writer.flush()
    store = make_store(url, pad_size=4 << 20)
    fs = AnthillFileSystem(store=store)

    def fetched() -> int:
        stats = store.backend_stats()
        assert stats is not None
        return stats.get.bytes

    bound = 1024 + (128 << 10)
    before = fetched()
    assert fs.cat_file("blob", 1_000_000, 1_001_024) == data[1_000_000:1_001_024]
    assert fetched() - before <= bound
    before = fetched()
    assert fs.cat_file("blob", -1024) == data[-1024:]
    assert fetched() - before <= bound
    before = fetched()
    with fs.open("blob", "rb") as f:
        f.seek(2_000_000)
        assert f.read(1024) == data[2_000_000:2_001_024]
        f.seek(10)
        assert f.read(1024) == data[10:1034]
    assert fetched() - before <= 2 * bound
    # Without a range: the whole item.
    assert fs.cat_file("blob") == data


def test_writes_are_stored_when_the_file_closes(fs: AnthillFileSystem) -> None:
    with fs.open("out", "wb", block_size=5 * 2**20) as f:
        for i in range(1000):
            f.write(b"%04d" % i)
        assert "out" not in fs.store
    assert fs.cat_file("out") == b"".join(b"%04d" % i for i in range(1000))
    with fs.open("out", "ab") as f:
        f.write(b"+tail")
    assert fs.cat_file("out").endswith(b"0999+tail")
    with fs.open("text/notes.txt", "w") as t:
        t.write("héllo\n")
    assert fs.open("text/notes.txt", "r").read() == "héllo\n"


def test_transaction_stores_on_commit_only(fs: AnthillFileSystem) -> None:
    with fs.transaction:
        fs.pipe_file("kept-out", b"x")  # pipe is immediate
        with fs.open("in-transaction", "wb") as f:
            f.write(b"later")
        assert "in-transaction" not in fs.store
    assert fs.cat_file("in-transaction") == b"later"


def test_put_and_get_files(fs: AnthillFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "in"
    (local / "sub").mkdir(parents=True)
    (local / "a.bin").write_bytes(b"a" * 10_000)
    (local / "sub" / "b.bin").write_bytes(b"b")
    fs.put(str(local), "up", recursive=True)
    assert sorted(fs.store) == ["up/a.bin", "up/sub/b.bin"]
    fs.get("up", str(tmp_path / "out"), recursive=True)
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"a" * 10_000
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == b"b"
    into = io.BytesIO()
    fs.get_file("up/a.bin", into)
    assert into.getvalue() == b"a" * 10_000


# --- opening -----------------------------------------------------------------------


def test_open_by_url_and_pickle(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    with fsspec.open("anthill://greeting", "wb", store=url, pad_size=PAD_SIZE) as f:
        f.write(b"hello")
    fs = fsspec.filesystem("anthill", store=url)
    copy = pickle.loads(pickle.dumps(fs))
    assert copy.cat_file("greeting") == b"hello"
    assert anthill.open(url).fetch_item("greeting") == b"hello"


def test_a_store_object_is_used_as_it_is(make_store: Callable[..., anthill.Store]) -> None:
    first, second = make_store(), make_store()
    fs1, fs2 = AnthillFileSystem(store=first), AnthillFileSystem(store=second)
    assert fs1.store is first and fs2.store is second
    fs1.pipe_file("k", b"1")
    assert "k" in first and "k" not in second
    # A copy reopens the store by its URL (memory stores are shared in-process).
    assert pickle.loads(pickle.dumps(fs1)).cat_file("k") == b"1"


# --- pandas ------------------------------------------------------------------------


def test_pandas_round_trip_through_parquet_and_csv(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    options: dict[str, Any] = {"store": (tmp_path / "store").as_uri(), "pad_size": 65536}
    frame = pd.DataFrame(
        {
            "city": ["Lyon", "Oslo", "Lima"] * 1000,
            "temperature": [12.5, -3.0, 19.25] * 1000,
            "day": range(3000),
        }
    )
    frame.to_parquet("anthill://weather/2026.parquet", storage_options=options)
    frame.to_csv("anthill://weather/2026.csv", index=False, storage_options=options)
    pd.testing.assert_frame_equal(
        pd.read_parquet("anthill://weather/2026.parquet", storage_options=options), frame
    )
    pd.testing.assert_frame_equal(
        pd.read_csv("anthill://weather/2026.csv", storage_options=options), frame
    )
    # Only columns asked for: pyarrow reads parts of the file through ranged reads.
    assert list(
        pd.read_parquet(
            "anthill://weather/2026.parquet", columns=["day"], storage_options=options
        ).columns
    ) == ["day"]
    store = anthill.open(options["store"])
    assert list(store.keys()) == ["weather/2026.csv", "weather/2026.parquet"]


# --- the async filesystem ----------------------------------------------------------


def write_requests(store: anthill.Store) -> int:
    stats = store.backend_stats()
    assert stats is not None
    return stats.put.calls + stats.durable_put.calls + stats.reserve.calls


def test_bulk_writes_run_together(make_store: Callable[..., anthill.Store]) -> None:
    """fs.pipe and fs.put store their items concurrently, so the store
    writes them in few backend requests instead of at least one each."""
    store = make_store(f"sim+memory://fsspec-{uuid.uuid4().hex}?latency_ms=5", pad_size=65536)
    fs = AnthillFileSystem(store=store)
    before = write_requests(store)
    fs.pipe({f"bulk/{i:03d}": b"%03d" % i for i in range(100)})
    piped = write_requests(store) - before
    assert fs.cat("bulk/*") == {f"bulk/{i:03d}": b"%03d" % i for i in range(100)}
    assert piped < 50, piped

    one_by_one = write_requests(store)
    for i in range(10):
        fs.pipe_file(f"single/{i}", b"x")
    assert write_requests(store) - one_by_one >= 10


async def test_async_use_inside_an_event_loop(
    make_store: Callable[..., anthill.Store],
) -> None:
    fs = AnthillFileSystem(store=make_store(), asynchronous=True)
    await fs._pipe({"a/1": b"one", "a/2": b"two"})
    assert await fs._cat("a/*") == {"a/1": b"one", "a/2": b"two"}
    assert await fs._cat_file("a/2", start=1) == b"wo"
    assert await fs._ls("a", detail=False) == ["a/1", "a/2"]
    assert await fs._isdir("a") and await fs._isfile("a/1")
    await fs._rm("a", recursive=True)
    assert not await fs._exists("a")
    with pytest.raises(FileNotFoundError):
        await fs._cat_file("a/1")
