"""Ranged reads and piecewise writes of one item, for the fsspec and zarr adapters.

This is the one seam between those adapters and the store. The adapters read
and write whole items (``fetch_item`` / ``store_item``) through it, though the
store itself can stream (``open_item``, ``fetch_range``, ``store_file``), so:

- a ranged read fetches the whole item and slices it; :class:`ItemRangeReader`
  (one per open file) keeps the item after its first read, so later reads of
  the same file do not fetch it again;
- a file opened for writing gathers its bytes in memory and stores them as
  one item when it is committed (:class:`ItemWriter`);
- copying a local file in or out holds it whole in memory
  (:func:`store_local_file_async`, :func:`fetch_to_local_file_async`).

The memory a file costs is therefore its whole size, once. To make the
adapters stream, only the bodies here change: they keep calling these names.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

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


def _slice(data: bytes, start: int | None, end: int | None) -> bytes:
    """``data[start:end]`` with Python's meaning (``None`` and negative bounds)."""
    if start is None and end is None:
        return data
    return data[start:end]


def read_range(store: Store, key: str, start: int | None = None, end: int | None = None) -> bytes:
    """Bytes ``start:end`` of the item ``key`` (Python slice bounds).

    Raises :class:`KeyNotFoundError` like :meth:`Store.fetch_item`.
    """
    return _slice(store.fetch_item(key), start, end)


async def read_range_async(
    store: Store, key: str, start: int | None = None, end: int | None = None
) -> bytes:
    """The awaitable :func:`read_range`."""
    return _slice(await store.fetch_item_async(key), start, end)


class ItemRangeReader:
    """Random access to one item for the life of one open file: the item is
    fetched at the first read and kept, so each later read is a slice."""

    __slots__ = ("_data", "_key", "_store")

    def __init__(self, store: Store, key: str) -> None:
        self._store = store
        self._key = key
        self._data: bytes | None = None

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start:end`` (``0 <= start``; ``end`` past the item is clipped)."""
        if self._data is None:
            self._data = self._store.fetch_item(self._key)
        return self._data[start:end]

    def close(self) -> None:
        self._data = None


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
