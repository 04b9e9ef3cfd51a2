"""Data in: any buffer; data out: bytes."""

from __future__ import annotations

import array
import gc
import mmap
import sys
from pathlib import Path

import anthill
import numpy as np
import pytest


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: b"plain bytes", b"plain bytes"),
        (lambda: bytearray(b"a bytearray"), b"a bytearray"),
        (lambda: memoryview(b"a memoryview"), b"a memoryview"),
        (lambda: memoryview(b"0123456789")[2:6], b"2345"),
        (lambda: memoryview(b"0123456789")[::3], b"0369"),  # not contiguous: copied
        (lambda: array.array("B", [1, 2, 3]), b"\x01\x02\x03"),
        (lambda: array.array("i", [1, 2]), array.array("i", [1, 2]).tobytes()),
        (lambda: np.arange(6, dtype=np.uint8), bytes(range(6))),
        (lambda: np.arange(4, dtype=np.float64), np.arange(4, dtype=np.float64).tobytes()),
        (
            lambda: np.arange(12, dtype=np.int16).reshape(3, 4),
            np.arange(12, dtype=np.int16).tobytes(),
        ),
        (
            lambda: np.arange(12, dtype=np.uint8).reshape(3, 4).T,
            np.arange(12, dtype=np.uint8).reshape(3, 4).T.tobytes(),
        ),
        (lambda: np.arange(10, dtype=np.uint8)[::2], bytes([0, 2, 4, 6, 8])),
        (lambda: b"", b""),
        (lambda: bytearray(), b""),
    ],
    ids=[
        "bytes",
        "bytearray",
        "memoryview",
        "memoryview-slice",
        "memoryview-strided",
        "array-B",
        "array-i",
        "numpy-u8",
        "numpy-f64",
        "numpy-2d",
        "numpy-fortran",
        "numpy-strided",
        "empty-bytes",
        "empty-bytearray",
    ],
)
def test_buffers_in_bytes_out(store: anthill.Store, make: object, expected: bytes) -> None:
    data = make()  # type: ignore[operator]
    store.store_item("k", data)
    out = store.fetch_item("k")
    assert type(out) is bytes
    assert out == expected
    assert store["k"] == expected


def test_large_numpy_array_roundtrip(store: anthill.Store) -> None:
    data = np.random.default_rng(7).integers(0, 256, size=200_000, dtype=np.uint8)
    store.store_item("array", data)
    assert np.array_equal(np.frombuffer(store.fetch_item("array"), dtype=np.uint8), data)


def test_mmap_is_accepted(store: anthill.Store, tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"m" * 10_000)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        store.store_item("k", mapped)
    assert store["k"] == b"m" * 10_000


def test_a_held_buffer_is_released_after_the_put(store: anthill.Store) -> None:
    data = bytearray(b"x" * 9000)
    store.store_item("k", data)
    gc.collect()
    # A bytearray cannot be resized while a buffer export is held.
    data.extend(b"more")
    assert store["k"] == b"x" * 9000


def test_stored_data_does_not_keep_the_object_alive(store: anthill.Store) -> None:
    data = bytes(b"y" * 5000)
    before = sys.getrefcount(data)
    for i in range(20):
        store.store_item(f"k{i}", data)
    # A reference let go on a tokio thread is released at the next call into
    # the extension (pyo3's deferred reference counting).
    store.summary()
    assert sys.getrefcount(data) == before


async def test_async_put_of_buffers(store: anthill.Store) -> None:
    await store.store_item_async("a", bytearray(b"async"))
    await store.store_item_async("b", np.ones(100, dtype=np.uint8))
    assert await store.fetch_item_async("a") == b"async"
    assert await store.fetch_item_async("b") == b"\x01" * 100
