"""anthill as a zarr v3 store: zarr's own store test suite, then arrays on it
and the pads their chunks cost.

zarr's ``StoreTests`` runs twice: at the root of a store, and under a key
prefix in a store that also holds an item outside that prefix (which no
listing, clearing or emptiness check may see).
"""

from __future__ import annotations

import asyncio
import math
import pickle
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthill
import pytest

zarr = pytest.importorskip("zarr")  # zarr 3 needs Python 3.11

import numpy as np
from anthill.zarr import AnthillStore
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import cpu
from zarr.testing.store import StoreTests

OUTSIDE_KEY = "outside/zarr.json"


class TestAnthillStore(StoreTests[AnthillStore, cpu.Buffer]):  # type: ignore[misc]
    store_cls = AnthillStore
    buffer_cls = cpu.Buffer

    @pytest.fixture(params=["", "nested/arrays"], ids=["root", "prefix"])
    def store_kwargs(
        self, request: pytest.FixtureRequest, make_store: Callable[..., anthill.Store]
    ) -> dict[str, Any]:
        store = make_store()
        if request.param:
            store[OUTSIDE_KEY] = b"not part of this zarr store"
        return {"store": store, "prefix": request.param}

    async def set(self, store: AnthillStore, key: str, value: Any) -> None:
        # Straight to the anthill store, bypassing the methods under test.
        full_key = f"{store.prefix}/{key}" if store.prefix else key
        await store.store.store_item_async(full_key, value.to_bytes(), overwrite=True)

    async def get(self, store: AnthillStore, key: str) -> Any:
        full_key = f"{store.prefix}/{key}" if store.prefix else key
        return self.buffer_cls.from_bytes(await store.store.fetch_item_async(full_key))

    def test_store_repr(self, store: AnthillStore) -> None:
        assert repr(store) == f"AnthillStore({store.store.url!r}, prefix={store.prefix!r})"

    def test_store_supports_writes(self, store: AnthillStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: AnthillStore) -> None:
        assert store.supports_listing

    async def test_outside_item_untouched(self, store: AnthillStore) -> None:
        await store.set("zarr.json", self.buffer_cls.from_bytes(b"{}"))
        await store.clear()
        expected = [OUTSIDE_KEY] if store.prefix else []
        assert list(store.store.keys()) == expected


def test_open_by_url_and_pickle(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    anthill.open(url, pad_size=65536).close()
    store = AnthillStore(url, prefix="/group/")
    assert store.prefix == "group"
    array = zarr.create_array(store, shape=(10,), chunks=(5,), dtype="i4")
    array[:] = np.arange(10)
    copy = pickle.loads(pickle.dumps(store))
    assert copy == store and copy.store is not store.store
    np.testing.assert_array_equal(zarr.open_array(copy)[:], np.arange(10))
    assert sorted(anthill.open(url).keys()) == ["group/c/0", "group/c/1", "group/zarr.json"]
    assert store != AnthillStore(url, prefix="other")
    assert store != store.with_read_only(True)


def test_a_missing_key_reads_as_absent(make_store: Callable[..., anthill.Store]) -> None:
    store = AnthillStore(make_store())
    with pytest.raises(FileNotFoundError):
        zarr.open_array(store, mode="r")
    assert store.get_sync("nope") is None


def test_read_only_store_opens_arrays_but_refuses_writes(
    make_store: Callable[..., anthill.Store],
) -> None:
    items = make_store()
    array = zarr.create_array(AnthillStore(items), shape=(4,), chunks=(2,), dtype="u1")
    array[:] = [1, 2, 3, 4]
    reader = zarr.open_array(AnthillStore(items, read_only=True), mode="r")
    np.testing.assert_array_equal(reader[:], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="read-only"):
        AnthillStore(items, read_only=True).set_sync("c/0", cpu.Buffer.from_bytes(b"x"))


def test_sharded_array_reads_chunks_by_range(make_store: Callable[..., anthill.Store]) -> None:
    store = AnthillStore(make_store())
    data = np.arange(10_000, dtype="u2").reshape(100, 100)
    array = zarr.create_array(
        store, shape=data.shape, chunks=(10, 10), shards=(50, 50), dtype=data.dtype
    )
    array[:] = data
    assert sum(1 for key in store.store if key.startswith("c/")) == 4  # one item per shard
    np.testing.assert_array_equal(array[:], data)
    np.testing.assert_array_equal(array[12:37, 61:63], data[12:37, 61:63])


def test_a_ranged_get_fetches_about_the_range(make_store: Callable[..., anthill.Store]) -> None:
    """A get with a ``byte_range`` (a shard's index or one of its chunks)
    fetches the pad segments under the range, not the item: a fresh handle
    on 4 MiB pads reads 1 KiB of a 2 MiB item for at most 1 KiB + 128 KiB."""
    url = f"sim+memory://zarr-{uuid.uuid4().hex}"
    data = bytes(range(256)) * (2 * 4096)
    writer = make_store(url, pad_size=4 << 20)
    writer.store_item("c/0", data)
    writer.flush()
    items = make_store(url, pad_size=4 << 20)
    store = AnthillStore(items)
    prototype = cpu.buffer_prototype

    def fetched() -> int:
        stats = items.backend_stats()
        assert stats is not None
        return stats.get.bytes

    bound = 1024 + (128 << 10)
    for request, expected in [
        (RangeByteRequest(1_500_000, 1_501_024), data[1_500_000:1_501_024]),
        (SuffixByteRequest(1024), data[-1024:]),
        (OffsetByteRequest(len(data) - 1024), data[-1024:]),
    ]:
        before = fetched()
        got = store.get_sync("c/0", prototype=prototype, byte_range=request)
        assert got is not None and got.to_bytes() == expected
        assert fetched() - before <= bound, request
        before = fetched()
        got = asyncio.run(store.get("c/0", prototype, request))
        assert got is not None and got.to_bytes() == expected
        assert fetched() - before <= bound, request


def test_a_thousand_chunks_share_pads(tmp_path: Path) -> None:
    """Chunks are small items: anthill packs them into shared pads, where an
    object store or a folder would hold one object or file per chunk."""
    pad_size = 64 * 1024
    store = anthill.open(f"sim+{(tmp_path / 'store').as_uri()}", pad_size=pad_size)
    chunk_items = 128  # 1 KiB chunks of float64, stored uncompressed
    chunks = 1000
    data = np.arange(chunks * chunk_items, dtype="f8")
    array = zarr.create_array(
        AnthillStore(store, prefix=f"arrays/{uuid.uuid4().hex}"),
        shape=data.shape,
        chunks=(chunk_items,),
        dtype=data.dtype,
        compressors=None,
    )
    array[:] = data
    np.testing.assert_array_equal(array[:], data)

    summary = store.summary()
    stats = store.backend_stats()
    assert stats is not None
    assert summary.items == chunks + 1  # the chunks and zarr.json
    item_bytes = sum(item.size for item in store.list_items())
    assert item_bytes == data.nbytes + store.list_items()[-1].size
    ideal = math.ceil(item_bytes / pad_size)  # pads fully packed: 16 here
    one_object_per_chunk = summary.items
    print(
        f"{chunks} chunks of {chunk_items * 8} B: {summary.total_pads} pads of {pad_size} B "
        f"(ideal {ideal}, one object per chunk {one_object_per_chunk})"
    )
    assert summary.total_pads == stats.pads_reserved
    assert ideal <= summary.total_pads <= ideal + 1
    assert summary.total_pads * 50 < one_object_per_chunk


def test_a_lost_pad_is_an_error_not_a_missing_chunk(tmp_path: Path) -> None:
    """zarr reads a missing chunk as the fill value, so only a key that is
    not stored may read as absent: a chunk whose pad is lost must fail."""
    folder = tmp_path / "store"
    # Chunks of whole pads, so that none stays in the store's cache of the
    # partly filled pad new small items go to.
    array = zarr.create_array(
        AnthillStore(anthill.open(folder.as_uri(), pad_size=4096)),
        shape=(3 * 4096,),
        chunks=(4096,),
        dtype="u1",
        compressors=None,
    )
    array[:] = 7
    shutil.rmtree(folder / "p")  # the folder backend keeps its pads there
    with pytest.raises(anthill.BackendError):
        array[:]
