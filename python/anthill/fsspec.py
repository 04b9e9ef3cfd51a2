"""anthill as an fsspec filesystem: ``anthill://path`` for pandas, pyarrow,
xarray, dask and every other library that takes fsspec URLs.

>>> import pandas as pd
>>> df.to_parquet("anthill://tables/x.parquet", storage_options={"store": "file:///data/s"})
>>> pd.read_parquet("anthill://tables/x.parquet", storage_options={"store": "file:///data/s"})

``fsspec.filesystem("anthill", store=URL, secret=...)`` gives an
:class:`AnthillFileSystem` (registered under the protocol ``anthill`` by the
``fsspec.specs`` entry point); ``store`` is a store URL as
:func:`anthill.open` takes it, an open :class:`anthill.Store`, or ``None``
for ``$ANTHILL_STORE`` or the default store. Further options go to
:func:`anthill.open`.

Paths and keys. A path is a key: ``anthill://a/b/c`` and ``a/b/c`` are the
key ``"a/b/c"``; leading and trailing ``/`` are dropped, so keys that start or
end with ``/`` are not reachable through this module. Directories are implied
by keys: ``a`` and ``a/b`` are directories because ``a/b/c`` is stored; they
cannot be empty, ``mkdir`` stores nothing, and a directory disappears with its
last file.

Errors. A missing key is a :class:`FileNotFoundError` and a key that exists
when it must not (``mode="create"``, ``"xb"``) a :class:`FileExistsError`, as
fsspec's callers expect; every other failure is anthill's own exception
(:class:`anthill.BackendError`, :class:`anthill.IntegrityError`, ...).

Async. It is an fsspec async filesystem over the store's ``*_async``
methods: bulk calls (``cat``, ``pipe``, ``put``, ``get``, ``copy``, ``rm`` of
many paths) run their items concurrently, so the store writes many small
items in few backend requests; ``asynchronous=True`` gives the awaitable
``_cat_file``, ``_pipe``, ... inside a running event loop. Listing and
existence checks call the store's synchronous ``list_items``/``keys``/``in``
(they have no async twins): short calls, but they hold up the event loop
while they catch up with other writers.

Reading and writing. Reads fetch what they are asked for: each read of a
file opened ``"rb"``, and ``cat_file`` with a range, fetches only that range
(the pad segments under it) of the item as it was when the file was first
read; ``cat_file`` without one fetches the item. A file opened ``"wb"`` keeps
what is written in memory and stores it as one item when closed;
``put_file``/``get_file`` read or write the local file whole. All of that
goes through ``anthill._item_io``. ``mv`` is a copy then a remove.
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks  # type: ignore[import-untyped]
from fsspec.spec import (  # type: ignore[import-untyped]
    AbstractBufferedFile,
    _Cached,
    make_instance,
)
from fsspec.utils import isfilelike  # type: ignore[import-untyped]

from anthill._anthill import is_credential
from anthill._errors import KeyExistsError, KeyNotFoundError
from anthill._item_io import (
    ItemRangeReader,
    ItemWriter,
    fetch_to_local_file_async,
    read_range_async,
    store_local_file_async,
)
from anthill._store import Store
from anthill._store import open as open_store
from anthill._summary import ItemInfo

__all__ = ["AnthillFile", "AnthillFileSystem"]

PROTOCOL = "anthill"


@contextmanager
def _as_file_errors(path: str) -> Iterator[None]:
    """Turns a missing or existing key into the OSError fsspec's callers expect."""
    try:
        yield
    except KeyNotFoundError as error:
        raise FileNotFoundError(errno.ENOENT, "no such item", path) from error
    except KeyExistsError as error:
        raise FileExistsError(errno.EEXIST, "item exists", path) from error


def _file_info(item: ItemInfo) -> dict[str, Any]:
    return {
        "name": item.key,
        "size": item.size,
        "type": "file",
        "created": item.created,
        "modified": item.modified,
    }


def _directory_info(path: str) -> dict[str, Any]:
    return {"name": path, "size": 0, "type": "directory"}


class _StoreAwareCache(_Cached):  # type: ignore[misc]
    """fsspec reuses one filesystem per set of arguments, telling them apart
    by their text; two open stores on one URL print alike, so a filesystem
    made from a :class:`Store` object is never shared."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("store"), Store) or any(isinstance(a, Store) for a in args):
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class AnthillFileSystem(AsyncFileSystem, metaclass=_StoreAwareCache):  # type: ignore[misc]
    """An anthill store seen as a filesystem (fsspec protocol ``anthill``).

    An fsspec async filesystem: every method has an awaitable ``_name``
    twin, and the bulk operations (``cat``, ``pipe``, ``put``, ``get``,
    ``copy``, ``rm`` of many paths) run their items concurrently, which lets
    the store write many small items together.

    >>> fs = fsspec.filesystem("anthill", store="file:///data/my-store")
    >>> fs.pipe_file("notes/today", b"buy milk")
    >>> fs.ls("notes")
    [{'name': 'notes/today', 'size': 8, 'type': 'file', ...}]
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        secret: str | bytes | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        """``store``: a store URL, an open :class:`anthill.Store` or ``None``
        (``$ANTHILL_STORE``, else the default store); ``secret`` and the other
        keyword arguments go to :func:`anthill.open`, but for fsspec's own
        (``asynchronous``, ``loop``, ``batch_size``, the listings cache's)."""
        fsspec_options = {
            name: options.pop(name)
            for name in ("use_listings_cache", "listings_expiry_time", "max_paths")
            if name in options
        }
        super().__init__(
            asynchronous=asynchronous, loop=loop, batch_size=batch_size, **fsspec_options
        )
        if isinstance(store, Store):
            self.store = store
        else:
            self.store = open_store(store, secret=secret, **options)

    def __reduce__(self) -> Any:
        # A copy (a dask worker's) is made with the same options but the
        # secrets: the store secret and S3 credentials come from the worker's
        # environment. A Store given as `store` pickles itself the same way.
        options = {
            name: value
            for name, value in self.storage_options.items()
            if name != "secret" and not is_credential(name)
        }
        return make_instance, (type(self), self.storage_args, options)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    # --- what is stored ---------------------------------------------------------

    def _items_under(self, path: str) -> list[ItemInfo]:
        """The items whose keys lie below the directory ``path`` ("" is the root)."""
        prefix = f"{path}/" if path else ""
        return [item for item in self.store.list_items() if item.key.startswith(prefix)]

    def _item(self, key: str) -> ItemInfo | None:
        if not key or key not in self.store:
            return None
        for item in self.store.list_items():
            if item.key == key:
                return item
        return None  # removed meanwhile

    def _is_directory(self, path: str) -> bool:
        return not path or bool(self._items_under(path))

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        item = self._item(path)
        if item is not None:
            entries = [_file_info(item)]
        else:
            prefix = f"{path}/" if path else ""
            children: dict[str, dict[str, Any]] = {}
            for below in self._items_under(path):
                name, slash, _ = below.key[len(prefix) :].partition("/")
                child = prefix + name
                if slash:
                    children.setdefault(child, _directory_info(child))
                else:
                    children[child] = _file_info(below)
            if not children and path:
                raise FileNotFoundError(errno.ENOENT, "no such item or directory", path)
            entries = [children[name] for name in sorted(children)]
        return entries if detail else [entry["name"] for entry in entries]

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        item = self._item(path)
        if item is not None:
            return _file_info(item)
        if self._is_directory(path):
            return _directory_info(path)
        raise FileNotFoundError(errno.ENOENT, "no such item or directory", path)

    async def _find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        **kwargs: Any,
    ) -> Any:
        # One listing of the store instead of one per directory (the default
        # walks with ls, and every ls lists the whole store).
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        detail = kwargs.pop("detail", False)
        path = self._strip_protocol(path)
        item = self._item(path)
        if item is not None:
            return {path: _file_info(item)} if detail else [path]
        prefix = f"{path}/" if path else ""
        found: dict[str, dict[str, Any]] = {}
        for below in self._items_under(path):
            parts = below.key[len(prefix) :].split("/")
            if withdirs:
                for depth in range(1, len(parts)):
                    if maxdepth is None or depth <= maxdepth:
                        name = prefix + "/".join(parts[:depth])
                        found.setdefault(name, _directory_info(name))
            if maxdepth is None or len(parts) <= maxdepth:
                found[below.key] = _file_info(below)
        if withdirs and path and found:
            found[path] = _directory_info(path)
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        path = self._strip_protocol(path)
        return path in self.store or self._is_directory(path)

    async def _isfile(self, path: str) -> bool:
        path = self._strip_protocol(path)
        return bool(path) and path in self.store

    async def _isdir(self, path: str) -> bool:
        return self._is_directory(self._strip_protocol(path))

    def created(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["created"], tz=timezone.utc)

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["modified"], tz=timezone.utc)

    # --- directories are implied by keys --------------------------------------

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Stores nothing: a directory exists while a key lies below it."""
        path = self._strip_protocol(path)
        if path and path in self.store:
            raise FileExistsError(errno.EEXIST, "an item has this name", path)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not exist_ok and path and await self._exists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        await self._mkdir(path)

    def rmdir(self, path: str) -> None:
        """Removes nothing: an empty directory does not exist."""
        path = self._strip_protocol(path)
        if path and self._items_under(path):
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)

    # --- items --------------------------------------------------------------------

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        with _as_file_errors(path):
            return await read_range_async(self.store, path, start, end)

    async def _pipe_file(
        self, path: str, value: Any, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Stores ``value`` under ``path``; ``mode="create"`` refuses to
        replace an existing item (:class:`FileExistsError`)."""
        path = self._strip_protocol(path)
        with _as_file_errors(path):
            await self.store.store_item_async(path, value, overwrite=mode != "create")

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if path1 and path1 in self.store:
            with _as_file_errors(path1):
                data = await self.store.fetch_item_async(path1)
            await self.store.store_item_async(path2, data, overwrite=True)
        elif not self._is_directory(path1):
            raise FileNotFoundError(errno.ENOENT, "no such item or directory", path1)
        # A directory needs no copy of its own: its files make it exist.

    async def _put_file(
        self, lpath: str, rpath: str, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            return  # directories are implied by the files put into them
        with _as_file_errors(rpath):
            await store_local_file_async(self.store, rpath, lpath, overwrite=mode != "create")

    async def _get_file(self, rpath: str, lpath: Any, **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        if isfilelike(lpath):
            with _as_file_errors(rpath):
                lpath.write(await read_range_async(self.store, rpath))
            return
        if not (rpath and rpath in self.store) and self._is_directory(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        with _as_file_errors(rpath):
            await fetch_to_local_file_async(self.store, rpath, lpath)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        with _as_file_errors(path):
            await self.store.remove_item_async(path)

    async def _rm(
        self,
        path: Any,
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        paths = await self._expand_path(
            self._strip_protocol(path), recursive=recursive, maxdepth=maxdepth
        )
        # Decide from one snapshot what each path is before removing anything,
        # since a directory vanishes with its last file.
        keys = set(self.store.keys())
        directories = {
            key.rsplit("/", depth)[0] for key in keys for depth in range(1, key.count("/") + 1)
        }
        for name in paths:
            if name and name not in keys and name not in directories:
                raise FileNotFoundError(errno.ENOENT, "no such item or directory", name)
            if name in directories and name not in keys and not recursive:
                raise IsADirectoryError(errno.EISDIR, "a directory (use recursive=True)", name)
        await _run_coros_in_chunks(
            [self._rm_file(name) for name in paths if name in keys],
            batch_size=batch_size or self.batch_size,
            nofiles=True,
        )

    # --- files -----------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> AnthillFile:
        path = self._strip_protocol(path)
        if "x" in mode and path in self.store:
            raise FileExistsError(errno.EEXIST, "item exists", path)
        if mode == "rb" and not (path and path in self.store):
            if self._is_directory(path):
                raise IsADirectoryError(errno.EISDIR, "a directory", path)
            raise FileNotFoundError(errno.ENOENT, "no such item", path)
        return AnthillFile(
            self,
            path,
            mode=mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )


class AnthillFile(AbstractBufferedFile, metaclass=abc.ABCMeta):  # type: ignore[misc]
    """One open item: ``"rb"`` reads it (random access), ``"wb"``/``"xb"``
    write it and ``"ab"`` appends to it; the item is stored when the file
    is closed (or, in a transaction, committed)."""

    fs: AnthillFileSystem

    def __init__(self, fs: AnthillFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        # Each read fetches just its range (the pad segments under it); a
        # block cache would fetch more than asked.
        kwargs.setdefault("cache_type", "none")
        if kwargs.get("block_size") is None:
            kwargs.pop("block_size", None)
        super().__init__(fs, path, mode=mode, **kwargs)
        self._reader = ItemRangeReader(fs.store, path) if mode == "rb" else None
        self._writer: ItemWriter | None = None

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self._reader is not None
        with _as_file_errors(self.path):
            return self._reader.read(start, end)

    def _initiate_upload(self) -> None:
        initial = b""
        if self.mode == "ab" and self.path in self.fs.store:
            with _as_file_errors(self.path):
                initial = self.fs.store.fetch_item(self.path)
        self._writer = ItemWriter(self.fs.store, self.path, initial)

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._writer is not None
        self._writer.write(self.buffer.getbuffer())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        assert self._writer is not None
        with _as_file_errors(self.path):
            self._writer.commit(overwrite="x" not in self.mode)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.discard()

    def close(self) -> None:
        super().close()
        if self._reader is not None:
            self._reader.close()
