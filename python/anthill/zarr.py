"""anthill as a zarr v3 store: arrays and groups whose chunks are anthill items.

>>> import zarr
>>> from anthill.zarr import AnthillStore
>>> store = AnthillStore("file:///data/my-store", prefix="climate")
>>> z = zarr.create_array(store, shape=(1000, 1000), chunks=(100, 100), dtype="f4")
>>> z[:] = 1.0

Each zarr key (``zarr.json``, ``c/0/1``, ...) is the anthill key
``prefix + "/" + key``. Chunks are small items, and anthill packs small items
into shared pads, so an array of many chunks costs a handful of pads where an
object store or a folder costs one object or one file per chunk.

``store`` is an open :class:`anthill.Store` or a URL for :func:`anthill.open`
(the secret then comes from ``$ANTHILL_SECRET`` or your key file). The
:class:`anthill.Store` stays open when the zarr store is closed: it may serve
others; close it yourself. A pickled :class:`AnthillStore` carries its
:class:`anthill.Store`, which reopens itself where it was with every option it
was opened with but its secrets (the store secret, S3 credentials): an
unpickled copy reads the same data in the same process (memory stores
included) and, with the secret from ``$ANTHILL_SECRET`` or the key file, in
another. The copies a process unpickles (a dask worker, one per task) share
one :class:`anthill.Store`, so the worker takes the store's writer lock
once, not once per chunk.

Reads, writes and deletes use the store's async API; listing and ``exists``
call its synchronous ``keys``/``in`` (they have no async twins), which hold
up zarr's event loop while they catch up with other writers. A ranged read
(``byte_range``, sharded arrays) fetches only the range: the pad segments
under it (``anthill._item_io``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from anthill._errors import KeyExistsError, KeyNotFoundError
from anthill._item_io import read_range, read_range_async
from anthill._store import Store as AnthillItemStore
from anthill._store import open as open_store

__all__ = ["AnthillStore"]


def _slice_bounds(byte_range: ByteRequest | None) -> tuple[int | None, int | None]:
    """A zarr byte request as Python slice bounds."""
    if byte_range is None:
        return None, None
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.start, byte_range.end
    if isinstance(byte_range, OffsetByteRequest):
        return byte_range.offset, None
    if isinstance(byte_range, SuffixByteRequest):
        # data[-0:] would be all of it: no bytes from the end means none.
        return (-byte_range.suffix, None) if byte_range.suffix else (0, 0)
    raise ValueError(f"Unexpected byte_range, got {byte_range}.")


class AnthillStore(Store):
    """A zarr v3 store over an anthill store, under a key ``prefix``.

    Supports writes, deletes and listing; ``read_only=True`` refuses writes
    (``ValueError``, as zarr expects). Two stores are equal when they use the
    same anthill store URL, prefix and read-only mode.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    _store: AnthillItemStore
    _prefix: str

    def __init__(
        self, store: AnthillItemStore | str, *, prefix: str = "", read_only: bool = False
    ) -> None:
        super().__init__(read_only=read_only)
        self._store = store if isinstance(store, AnthillItemStore) else open_store(store)
        prefix = prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""

    @property
    def store(self) -> AnthillItemStore:
        """The anthill store holding the items."""
        return self._store

    @property
    def prefix(self) -> str:
        """The key prefix of every item of this zarr store ("" for none)."""
        return self._prefix.rstrip("/")

    def with_read_only(self, read_only: bool = False) -> AnthillStore:
        return type(self)(self._store, prefix=self._prefix, read_only=read_only)

    def __repr__(self) -> str:
        return f"AnthillStore({self._store.url!r}, prefix={self.prefix!r})"

    def __str__(self) -> str:
        return f"anthill:{self._store.url}#{self.prefix}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AnthillStore)
            and self._store._reopen_args() == other._store._reopen_args()
            and self._prefix == other._prefix
            and self.read_only == other.read_only
        )

    def __hash__(self) -> int:
        return hash((self._store.url, self._prefix, self.read_only))

    def __getstate__(self) -> dict[str, Any]:
        # The store pickles itself: its URL and every option it was opened
        # with, but its secrets (see anthill.Store.__reduce__).
        return {"store": self._store, "prefix": self._prefix, "read_only": self.read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], prefix=state["prefix"], read_only=state["read_only"])  # type: ignore[misc]

    def _key(self, key: str) -> str:
        return self._prefix + key

    # --- reading ----------------------------------------------------------------

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        await self._ensure_open()
        start, end = _slice_bounds(byte_range)
        try:
            data = await read_range_async(self._store, self._key(key), start, end)
        except KeyNotFoundError:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return list(
            await asyncio.gather(
                *(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)
            )
        )

    async def exists(self, key: str) -> bool:
        return self._key(key) in self._store

    async def getsize(self, key: str) -> int:
        full_key = self._key(key)
        if full_key in self._store:
            for item in self._store.list_items():
                if item.key == full_key:
                    return item.size
        raise FileNotFoundError(key)

    async def getsize_prefix(self, prefix: str) -> int:
        # One listing, not one per key as the default does.
        start = self._key(prefix)
        return sum(item.size for item in self._store.list_items() if item.key.startswith(start))

    # --- writing ----------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        if not isinstance(value, Buffer):
            raise TypeError(f"AnthillStore.set(): value must be a Buffer, not {type(value)}")
        await self._store.store_item_async(self._key(key), value.as_buffer_like(), overwrite=True)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        try:
            await self._store.store_item_async(self._key(key), value.as_buffer_like())
        except KeyExistsError:
            pass

    async def delete(self, key: str) -> None:
        self._check_writable()
        try:
            await self._store.remove_item_async(self._key(key))
        except KeyNotFoundError:
            pass

    async def delete_dir(self, prefix: str) -> None:
        self._check_writable()
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        keys = [key async for key in self.list_prefix(prefix)]
        await asyncio.gather(*(self.delete(key) for key in keys))

    # --- listing ----------------------------------------------------------------

    def _keys_under(self, prefix: str) -> list[str]:
        """The zarr keys (without this store's prefix) that start with ``prefix``."""
        start = self._key(prefix)
        cut = len(self._prefix)
        return [key[cut:] for key in self._store if key.startswith(start)]

    async def list(self) -> AsyncIterator[str]:
        for key in self._keys_under(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys_under(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        prefix = f"{prefix}/" if prefix else ""
        children = {key[len(prefix) :].split("/", 1)[0] for key in self._keys_under(prefix)}
        for child in sorted(children):
            yield child

    # --- the synchronous twins zarr uses when it has them -----------------------

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        self._is_open = True
        start, end = _slice_bounds(byte_range)
        try:
            data = read_range(self._store, self._key(key), start, end)
        except KeyNotFoundError:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        self._is_open = True
        self._store.store_item(self._key(key), value.as_buffer_like(), overwrite=True)

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        self._is_open = True
        try:
            self._store.remove_item(self._key(key))
        except KeyNotFoundError:
            pass
