"""Ranged reads and piecewise writes of one item, for the fsspec and zarr adapters.

This is the one seam between those adapters and the store:

- a ranged read fetches only the range (``Store.fetch_range`` and the item
  reader behind ``Store.open_item``, which fetch the pad segments under it);
  a read without bounds fetches the whole item;
- a file opened for writing gathers its bytes in memory and stores them as
  one item when it is committed (:class:`ItemWriter`);
- copying a local file in or out holds it whole in memory
  (:func:`store_local_file_async`, :func:`fetch_to_local_file_async`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from . import _anthill
from ._errors import InvalidInputError

if TYPE_CHECKING:
    from ._store import Store

__all__ = [
    "ItemRangeReader",
    "ItemWriter",
    "fetch_to_local_file_async",
    "read_range",
    "read_range_async",
    "store_local_file_async",
]


def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """``start:end`` of an item of ``size`` bytes (Python slice bounds) as
    an offset and a length inside it."""
    first, last, _ = slice(start, end).indices(size)
    return first, max(0, last - first)


def _open(store: Store, key: str) -> _anthill.NativeItemReader:
    return _anthill.NativeStreams(store._native).open_item(key)


def read_range(store: Store, key: str, start: int | None = None, end: int | None = None) -> bytes:
    """Bytes ``start:end`` of the item ``key`` (Python slice bounds), fetching
    only those (the pad segments under them).

    Raises :class:`KeyNotFoundError` like :meth:`Store.fetch_item`.
    """
    if start is None and end is None:
        return store.fetch_item(key)
    reader = _open(store, key)
    offset, length = _bounds(reader.size, start, end)
    return reader.read_range(offset, length) if length else b""


async def read_range_async(
    store: Store, key: str, start: int | None = None, end: int | None = None
) -> bytes:
    """The awaitable :func:`read_range`."""
    if start is None and end is None:
        return await store.fetch_item_async(key)
    if start is not None and end is not None and 0 <= start <= end:
        # The usual request (a shard's index or chunk): no size needed,
        # unless it reaches past the item's end.
        try:
            return await store.fetch_range_async(key, start, end - start)
        except InvalidInputError:
            pass
    return await asyncio.to_thread(read_range, store, key, start, end)


class ItemRangeReader:
    """Random access to one item for the life of one open file: each read
    fetches only its range, from the item as it was when first read."""

    __slots__ = ("_key", "_reader", "_store")

    def __init__(self, store: Store, key: str) -> None:
        self._store = store
        self._key = key
        self._reader: _anthill.NativeItemReader | None = None

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start:end`` (``0 <= start``; ``end`` past the item is clipped)."""
        if self._reader is None:
            self._reader = _open(self._store, self._key)
        offset, length = _bounds(self._reader.size, start, end)
        return self._reader.read_range(offset, length) if length else b""

    def close(self) -> None:
        self._reader = None


class ItemWriter:
    """The bytes of one item being written, stored as one item by :meth:`commit`."""

    __slots__ = ("_data", "_key", "_store")

    def __init__(self, store: Store, key: str, initial: bytes = b"") -> None:
        self._store = store
        self._key = key
        self._data = bytearray(initial)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def commit(self, *, overwrite: bool) -> None:
        """Stores everything written so far under the key. Raises
        :class:`KeyExistsError` if the key exists and ``overwrite`` is false."""
        data, self._data = self._data, bytearray()
        self._store.store_item(self._key, data, overwrite=overwrite)

    def discard(self) -> None:
        self._data = bytearray()


async def store_local_file_async(store: Store, key: str, path: str, *, overwrite: bool) -> None:
    """Stores the local file ``path`` as the item ``key`` (read whole for now)."""
    data = await asyncio.to_thread(Path(path).read_bytes)
    await store.store_item_async(key, data, overwrite=overwrite)


async def fetch_to_local_file_async(store: Store, key: str, path: str) -> int:
    """Writes the item ``key`` to the local file ``path``; the bytes written."""
    data = await store.fetch_item_async(key)
    return await asyncio.to_thread(Path(path).write_bytes, data)
