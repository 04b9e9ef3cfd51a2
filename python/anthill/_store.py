"""``anthill.open`` and :class:`Store`: the mapping-like face of the Rust store."""

from __future__ import annotations

import asyncio
import atexit
import html
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, KeysView, MutableMapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypedDict, TypeVar

from . import _anthill
from ._config import default_store_url, resolve_secret, state_dir, to_url
from ._errors import AnthillError
from ._events import GetEvent, OperationProgress, PutEvent
from ._picture import PadPicture, to_html
from ._progress import Progress
from ._stream import Dest, FileArgs, ItemReader, Source, dest_args, source_args
from ._summary import BackendStats, CompactReport, ItemInfo, StorageSummary, VerifyReport

if TYPE_CHECKING:
    from typing_extensions import Buffer, Self

    class _ArrayLike(Protocol):
        """A numpy array: its stubs declare the buffer protocol only for
        Python >= 3.12, so older type checkers need this to accept one."""

        @property
        def __array_interface__(self) -> dict[str, Any]: ...

    _Data: TypeAlias = Buffer | _ArrayLike

__all__ = [
    "AsyncGetCallback",
    "AsyncPutCallback",
    "GetCallback",
    "OperationCallback",
    "PutCallback",
    "Store",
    "open",
]

PutCallback: TypeAlias = Callable[[PutEvent], bool | None]
"""A callback of :meth:`Store.store_item`: ``False`` cancels, ``True``/``None`` go on."""
GetCallback: TypeAlias = Callable[[GetEvent], bool | None]
"""A callback of :meth:`Store.fetch_item`."""
AsyncPutCallback: TypeAlias = Callable[[PutEvent], bool | None | Awaitable[bool | None]]
"""A callback of :meth:`Store.store_item_async`: a plain or an ``async def`` callable."""
OperationCallback: TypeAlias = Callable[[OperationProgress], bool | None]
"""A callback of :meth:`Store.verify` and :meth:`Store.compact`: ``False`` cancels."""
AsyncOperationCallback: TypeAlias = Callable[
    [OperationProgress], bool | None | Awaitable[bool | None]
]
"""A callback of :meth:`Store.verify_async` and :meth:`Store.compact_async`."""
AsyncGetCallback: TypeAlias = Callable[[GetEvent], bool | None | Awaitable[bool | None]]
"""A callback of :meth:`Store.fetch_item_async`: a plain or an ``async def`` callable."""


class _PutOptions(TypedDict):
    overwrite: bool
    resume: bool
    max_new_pads: int | None


def _put(overwrite: bool, resume: bool, max_new_pads: int | None) -> _PutOptions:
    """The options of a put, as every put method passes them to the core."""
    return {"overwrite": overwrite, "resume": resume, "max_new_pads": max_new_pads}


@contextmanager
def _reading(args: FileArgs) -> Iterator[None]:
    """Closes what a put opened to read its source, however it ends, and marks
    a file object read to its end when the put succeeds."""
    try:
        yield
        args.done()
    finally:
        args.close()


@contextmanager
def _operation(callback: object) -> Iterator[None]:
    """Lets a :class:`Progress` callback start afresh and close its bars on error."""
    if not isinstance(callback, Progress):
        yield
        return
    callback.begin()
    try:
        yield
    except BaseException:
        callback.close()
        raise


class StoreKeys(KeysView[str]):
    """The keys of a store at one instant, in sorted order (a snapshot)."""

    __slots__ = ("_keys", "_set")

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys
        self._set = frozenset(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __repr__(self) -> str:
        return f"StoreKeys({self._keys!r})"


class Store(MutableMapping[str, bytes]):
    """A private, encrypted key-value store (``str`` -> ``bytes``) kept in pads.

    Made by :func:`anthill.open`. Usable as a mapping and as a context manager;
    every long operation releases the GIL, and several threads may share one
    store. Each ``*_async`` method is the awaitable twin of the method of the
    same name.

    >>> with anthill.open("memory://demo", secret="s") as store:
    ...     store["greeting"] = b"hello"           # store_item(..., overwrite=True)
    ...     store["greeting"]
    b'hello'
    """

    __slots__ = ("__weakref__", "_native", "_options")

    def __init__(self, native: _anthill.NativeStore, options: dict[str, Any] | None = None) -> None:
        """Use :func:`anthill.open` to make a store."""
        self._native = native
        self._options = options or {}
        _open_stores.add(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """A pickled store reopens its store where it was, with every option it
        was opened with but the secrets: the store secret and the backend's
        credentials never travel. The copy takes them from its environment
        (``$ANTHILL_SECRET`` or the key file; the ``AWS_*`` variables).
        Copies unpickled in one process share one handle (see ``_reopen``):
        closing one closes it for all."""
        return (_reopen, self._reopen_args())

    def _reopen_args(self) -> tuple[str, dict[str, Any]]:
        """What another process opens this store with: :attr:`url` without the
        credentials it hides (``***``), and the keyword options of
        :func:`open` it was opened with, but ``secret`` and the credentials."""
        url = self.url
        base, _, query = url.partition("?")
        if query and _anthill.is_url(url):
            kept = [pair for pair in query.split("&") if not pair.endswith("=" + _REDACTED)]
            url = f"{base}?{'&'.join(kept)}" if kept else base
        return url, dict(self._options)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # Two stores are equal only if they are the same object (the Mapping
    # default would download every item of both to compare them).
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    @property
    def url(self) -> str:
        """The backend URL the store was opened with."""
        return self._native.url

    # --- put / get / remove ----------------------------------------------------

    def store_item(
        self,
        key: str,
        data: _Data,
        callback: PutCallback | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None:
        """Stores ``data`` (any bytes-like object, taken without a copy) under ``key``.

        ``callback`` receives every :class:`PutEvent`; returning ``False``
        cancels (:class:`OperationCancelledError`; at ``ConfirmReservation``
        nothing is spent), and an exception it raises aborts the put and
        reaches you unchanged. ``overwrite`` replaces an existing key,
        ``resume`` finishes an interrupted upload, ``max_new_pads`` caps the
        new pads this put may reserve.

        Raises :class:`KeyExistsError`, :class:`UploadPendingError`,
        :class:`OperationCancelledError`, :class:`BackendError`,
        :class:`InvalidInputError`.

        >>> store.store_item("notes/today", b"...", callback=anthill.progress)
        """
        with _operation(callback):
            self._native.store_item(
                None, key, data, callback, **_put(overwrite, resume, max_new_pads)
            )

    def fetch_item(self, key: str, callback: GetCallback | None = None) -> bytes:
        """The data stored under ``key``; ``callback`` receives every :class:`GetEvent`.

        Raises :class:`KeyNotFoundError`, :class:`IntegrityError`, :class:`BackendError`.

        >>> store.fetch_item("notes/today")
        b'...'
        """
        with _operation(callback):
            return self._native.fetch_item(None, key, callback)

    def remove_item(self, key: str) -> None:
        """Removes ``key``, freeing its space for reuse. Raises :class:`KeyNotFoundError`."""
        self._native.remove_item(None, key)

    async def store_item_async(
        self,
        key: str,
        data: _Data,
        callback: AsyncPutCallback | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None:
        """The awaitable :meth:`store_item`; ``callback`` may be an ``async def``.

        >>> await asyncio.gather(*(store.store_item_async(f"k{i}", b"v") for i in range(10)))
        """
        with _operation(callback):
            options = _put(overwrite, resume, max_new_pads)
            await _complete(self._native.store_item(_event_loop(), key, data, callback, **options))

    async def fetch_item_async(self, key: str, callback: AsyncGetCallback | None = None) -> bytes:
        """The awaitable :meth:`fetch_item`; ``callback`` may be an ``async def``."""
        with _operation(callback):
            return await _complete(self._native.fetch_item(_event_loop(), key, callback))

    async def remove_item_async(self, key: str) -> None:
        """The awaitable :meth:`remove_item`."""
        await _complete(self._native.remove_item(_event_loop(), key))

    # --- items larger than memory ---------------------------------------------

    def store_file(
        self,
        key: str,
        source: Source,
        callback: PutCallback | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None:
        """Stores the bytes of a file under ``key``, with bounded memory.

        ``source`` is a path or a readable binary file object (read from its
        current position to its end). A regular file is read a pad at a time
        as each upload starts; a stream of unknown size (a pipe) is first
        copied to an anonymous temporary file, so that ``ConfirmReservation``
        states exactly what the put spends. If the file changes while it is
        stored, the put fails (:class:`InvalidInputError`) and the key stays
        absent (or pending, for ``remove_item`` or a ``resume``). The options
        and events are those of :meth:`store_item`; ``resume=True`` finishes
        an interrupted put of the same file.

        >>> store.store_file("backups/2024.tar", "/data/2024.tar", callback=anthill.progress)
        """
        args = source_args(source)
        with _reading(args), _operation(callback):
            _anthill.NativeStreams(self._native).store_file(
                None, key, *args.native(), callback, **_put(overwrite, resume, max_new_pads)
            )

    async def store_file_async(
        self,
        key: str,
        source: Source,
        callback: AsyncPutCallback | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None:
        """The awaitable :meth:`store_file` (a stream is spooled in a thread)."""
        args = await asyncio.to_thread(source_args, source)
        with _reading(args), _operation(callback):
            streams = _anthill.NativeStreams(self._native)
            await _complete(
                streams.store_file(
                    _event_loop(),
                    key,
                    *args.native(),
                    callback,
                    **_put(overwrite, resume, max_new_pads),
                )
            )

    def fetch_file(self, key: str, dest: Dest, callback: GetCallback | None = None) -> int:
        """Writes the item stored under ``key`` to ``dest``; returns the bytes written.

        The item is streamed with bounded memory, a few pads at a time
        (fetched concurrently, written in order). A path is written as a
        temporary file beside it and renamed into place only once complete
        and its digest checked: an error, a cancel or a killed process never
        leaves a partial file there (a path that is not a file, such as
        ``/dev/null`` or a named pipe, is written directly). A writable binary file object receives
        the bytes as they come; if the digest then fails the call raises
        :class:`IntegrityError`, and what was written must be discarded.
        Events are those of :meth:`fetch_item`.

        >>> store.fetch_file("backups/2024.tar", "/restore/2024.tar")
        """
        path, writer = dest_args(dest)
        with _operation(callback):
            return _anthill.NativeStreams(self._native).fetch_file(
                None, key, path, writer, callback
            )

    async def fetch_file_async(
        self, key: str, dest: Dest, callback: AsyncGetCallback | None = None
    ) -> int:
        """The awaitable :meth:`fetch_file`."""
        path, writer = dest_args(dest)
        with _operation(callback):
            return await _complete(
                _anthill.NativeStreams(self._native).fetch_file(
                    _event_loop(), key, path, writer, callback
                )
            )

    def open_item(self, key: str) -> ItemReader:
        """The item stored under ``key`` as a read-only, seekable binary file.

        See :class:`ItemReader`: only the pad segments covering what is read are
        fetched, and every byte returned is authenticated.

        >>> with store.open_item("video.mp4") as f:
        ...     header = f.read(64)
        """
        native = _anthill.NativeStreams(self._native).open_item(key)
        return ItemReader(native, key)

    def fetch_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the item stored under ``key``.

        Reads only the pad segments that hold them. A range outside the item is an
        :class:`InvalidInputError`.

        >>> store.fetch_range("video.mp4", 0, 1024)
        """
        return _anthill.NativeStreams(self._native).fetch_range(None, key, offset, length)

    async def fetch_range_async(self, key: str, offset: int, length: int) -> bytes:
        """The awaitable :meth:`fetch_range`."""
        return await _complete(
            _anthill.NativeStreams(self._native).fetch_range(_event_loop(), key, offset, length)
        )

    # --- the allocator's view --------------------------------------------------

    def refresh(self) -> None:
        """Brings this handle up to date with what other writers (processes,
        machines) have committed, so reads after it see all of it.

        Reads also catch up by themselves: on a local folder (and in memory)
        every read sees what was committed before it began; on S3 (and ``sim+``) a
        read may miss what other writers committed in the last second (checking for it
        costs a request, so a loop of reads checks once a second).
        """
        self._native.refresh(None)

    async def refresh_async(self) -> None:
        """The awaitable :meth:`refresh`."""
        await _complete(self._native.refresh(_event_loop()))

    def summary(self) -> StorageSummary:
        """Pads, space (bytes) and item counts, as the allocator sees them now."""
        return self._native.summary(None)

    async def summary_async(self) -> StorageSummary:
        """The awaitable :meth:`summary`."""
        return await _complete(self._native.summary(_event_loop()))

    def check_allocation_possible(self, size: int) -> int | None:
        """``None`` if ``size`` bytes fit in free space, else the number of new
        pads a put of that size would reserve."""
        return self._native.check_allocation_possible(None, size)

    async def check_allocation_possible_async(self, size: int) -> int | None:
        """The awaitable :meth:`check_allocation_possible`."""
        return await _complete(self._native.check_allocation_possible(_event_loop(), size))

    def backend_stats(self) -> BackendStats | None:
        """Operation counters of a simulated (``sim+...``) backend, else ``None``."""
        return self._native.backend_stats()

    # --- the mapping protocol --------------------------------------------------

    def list_items(self) -> list[ItemInfo]:
        """Every stored item with its size and times, sorted by key (reads no data)."""
        return self._native.list_items()

    def _pending_items(self) -> list[tuple[str, int]]:
        """Keys with an interrupted upload (``summary().pending`` counts them)
        and their sizes, sorted: ``store_item(..., resume=True)`` or
        ``store_file(..., resume=True)`` finishes one, ``remove_item`` discards it."""
        return self._native.pending_items()

    def keys(self) -> StoreKeys:
        """The stored keys (committed items only), sorted: a snapshot."""
        return StoreKeys(self._native.keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._native.contains(key)

    def __getitem__(self, key: str) -> bytes:
        return self._native.fetch_item(None, key, None)

    def __setitem__(self, key: str, data: _Data) -> None:
        self._native.store_item(
            None, key, data, None, overwrite=True, resume=False, max_new_pads=None
        )

    def __delitem__(self, key: str) -> None:
        self._native.remove_item(None, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._native.keys())

    def __len__(self) -> int:
        return self._native.len()

    # --- store operations ------------------------------------------------------

    def rename_item(self, old: str, new: str, *, overwrite: bool = False) -> None:
        """Moves the item stored under ``old`` to ``new``: one index record, no
        data read or written, atomic (after a crash the item is under exactly
        one of the two names). Raises :class:`KeyNotFoundError` if ``old`` is
        not stored and :class:`KeyExistsError` if ``new`` is, unless
        ``overwrite`` (then the item ``new`` held is removed).

        >>> store.rename_item("draft", "final")
        """
        self._native.rename_item(None, old, new, overwrite=overwrite)

    async def rename_item_async(self, old: str, new: str, *, overwrite: bool = False) -> None:
        """The awaitable :meth:`rename_item`."""
        await _complete(self._native.rename_item(_event_loop(), old, new, overwrite=overwrite))

    def verify(self, deep: bool = True, callback: OperationCallback | None = None) -> VerifyReport:
        """Checks the store without changing it: every pad the index knows
        exists on the backend; with ``deep`` (the default) every pad holding
        items is also read and authenticated and every item checked against
        its digest (pads are read concurrently, a few at a time, so memory
        stays bounded). ``callback`` gets :class:`OperationProgress` events
        (pads read of pads to read).

        >>> report = store.verify()
        >>> report.ok, report.damaged, report.missing_pads
        (True, [], [])
        """
        return self._native.verify(None, deep, callback)

    async def verify_async(
        self, deep: bool = True, callback: AsyncOperationCallback | None = None
    ) -> VerifyReport:
        """The awaitable :meth:`verify` (``callback`` may be an ``async def``)."""
        return await _complete(self._native.verify(_event_loop(), deep, callback))

    def compact(self, callback: OperationCallback | None = None) -> CompactReport:
        """Moves live items out of the least-used pads into free space of the
        others, then releases the pads so emptied: deleted where that refunds
        storage (folder, memory, S3), kept as free space where a pad once paid
        for stays paid for (``sim+...?pads_refund=false``). Never reserves a
        pad. Crash-safe: an item's new place is recorded before its old one is
        freed. Small items held only in the log are written back first.
        ``callback`` gets :class:`OperationProgress` events (items moved).

        >>> report = store.compact()
        >>> print(f"{report.pads_before} -> {report.pads_after} pads")
        """
        return self._native.compact(None, callback)

    async def compact_async(self, callback: AsyncOperationCallback | None = None) -> CompactReport:
        """The awaitable :meth:`compact` (``callback`` may be an ``async def``)."""
        return await _complete(self._native.compact(_event_loop(), callback))

    def _pad_picture(self) -> PadPicture:
        """How full each pad is, from the memory map (no backend call)."""
        pad_size, pads, largest_free = self._native.pad_usage()
        return PadPicture(self.url, pad_size, pads, largest_free)

    def _repr_html_(self) -> str:
        """A picture of the pads for notebooks: one cell per pad, shaded by
        how full it is, with the totals and the largest free run."""
        try:
            return to_html(self._pad_picture())
        except AnthillError as error:  # a closed store: say so instead of failing
            return f"<div>{html.escape(repr(self))}: {html.escape(str(error))}</div>"

    # --- small writes ----------------------------------------------------------

    def flush(self) -> None:
        """Writes back to their pads the small items held only in the store's log.

        A small item (up to 1/16 of a pad on a local folder; on S3 and in
        memory, any item smaller than a pad) is committed by one write of its
        bytes to the store's log: it is durable, and readable by every
        process, as soon as :meth:`store_item` returns. The pads it shares are
        written later, in the background; ``flush`` does it now. ``close()``
        and the interpreter's exit flush too.
        """
        self._native.flush(None)

    async def flush_async(self) -> None:
        """The awaitable :meth:`flush`."""
        await _complete(self._native.flush(_event_loop()))

    def unflushed_bytes(self) -> int:
        """Bytes of small items committed in the log and not yet written back
        to their pads (``0`` after :meth:`flush`)."""
        return self._native.unflushed_bytes()

    # --- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Writes back what the log alone holds (see :meth:`flush`), if this
        handle stored, removed or renamed anything, and closes the store; later
        calls raise :class:`InvalidInputError`. A handle that only read never
        waits for another process's writer lock here. Closing twice
        is harmless. If the write-back fails, the store is closed anyway (the
        items stay safe in its log, for the next open) and the error raised."""
        _open_stores.discard(self)
        self._native.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()
# A child made by fork() inherits its parent's handles, which stay the
# parent's: it neither flushes nor closes them at exit.
os.register_at_fork(after_in_child=_open_stores.clear)


@atexit.register
def _flush_at_exit() -> None:
    """Closes the stores left open when Python exits, which writes back the
    small items this process stored. They are safe in the log either way;
    this spares the next open the work. A store this process only read is
    left as it is: its writers write back their own."""
    for store in list(_open_stores):
        try:
            store.close()
        except Exception as error:  # noqa: BLE001 - exiting: report, go on
            logging.getLogger("anthill").warning(
                "could not write back %s at exit (its items stay in its log): %s",
                store.url,
                error,
            )


_T = TypeVar("_T")

_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _anthill.EventLoopBridge] = (
    weakref.WeakKeyDictionary()
)


def _event_loop() -> _anthill.EventLoopBridge:
    """The running event loop's bridge, through which the Rust core completes
    the loop's async calls in batches (see ``EventLoopBridge`` in
    src/python/runtime.rs)."""
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _anthill.EventLoopBridge(loop)
    return bridge


async def _complete(call: tuple[asyncio.Future[_T], _anthill.CoreCall]) -> _T:
    """Awaits a core call; a cancelled caller drops the core's future too."""
    future, core = call
    try:
        return await future
    except asyncio.CancelledError:
        core.cancel()
        raise


def open(
    url: str | os.PathLike[str] | None = None,
    *,
    secret: str | bytes | None = None,
    pad_size: int | None = None,
    max_new_pads: int | None = None,
    reservation_concurrency: int | None = None,
    upload_concurrency: int | None = None,
    download_concurrency: int | None = None,
    retry_attempts: int | None = None,
    allow_rollback: bool = False,
    create: bool = True,
    **backend_options: str | float | bool,
) -> Store:
    """Opens (or creates) the store at ``url``.

    ``url``: ``file:///path`` or a folder path, ``memory://NAME``,
    ``s3://bucket/prefix``, or ``sim+<url>?latency_ms=..&fail_rate=..&pad_price=..``;
    ``None`` opens ``$ANTHILL_STORE`` or the default store in your data folder.
    ``secret`` (str or bytes): else ``$ANTHILL_SECRET``, else a key file made on
    first use in your config folder. ``pad_size`` (bytes) applies to a new store
    (default {pad_size}); ``max_new_pads`` caps the new pads of every put; the
    concurrency limits (backend calls in flight: reservations, uploads and
    downloads, default {reservation_concurrency}, {upload_concurrency} and
    {download_concurrency}) and ``retry_attempts`` (attempts per backend call,
    default {retry_attempts}) tune backend traffic. An option left out or
    ``None`` takes its default. Further keyword arguments go to the backend
    (for S3: ``endpoint``, ``region``, ``access_key_id``,
    ``secret_access_key``, ...).

    This machine remembers how far it has seen each store's log (in your state
    folder); a store that is behind that, or whose history differs, was rolled
    back (an older copy restored, newest log objects deleted) and raises
    :class:`IntegrityError`. ``allow_rollback=True`` opens it anyway (a backup
    restored on purpose) and remembers its state from then on.
    ``create=False`` opens only an existing store and creates nothing (no
    store, no folder, no key file): a missing one is an
    :class:`InvalidInputError` naming what is missing. A store of
    10,000 items or more also keeps a copy of its index there, checked against
    the store at every open, so that opening it reads a few kilobytes.

    Raises :class:`InvalidInputError`, :class:`BackendError`, :class:`IntegrityError`
    (a wrong secret, a rollback).

    >>> store = anthill.open("file:///data/my-store")
    >>> store = anthill.open("memory://scratch", secret="not so secret", pad_size=4096)
    """
    location = default_store_url() if url is None else to_url(url)
    options: dict[str, Any] = {
        "pad_size": pad_size,
        "max_new_pads": max_new_pads,
        "reservation_concurrency": reservation_concurrency,
        "upload_concurrency": upload_concurrency,
        "download_concurrency": download_concurrency,
        "retry_attempts": retry_attempts,
    }
    native = _anthill.NativeStore.open(
        location,
        resolve_secret(secret, create=create),
        **options,
        state_dir=str(state_dir()),
        allow_rollback=allow_rollback,
        backend_options=backend_options,
        create=create,
    )
    options.update(allow_rollback=allow_rollback, create=create)
    options.update(
        (name, value) for name, value in backend_options.items() if not _anthill.is_credential(name)
    )
    return Store(native, {name: value for name, value in options.items() if value is not None})


_REDACTED = "***"


# The handles unpickled copies share, by what they were opened with. A dask
# worker unpickles a task's store for every task it runs (every zarr
# chunk): a handle per copy took the writer lock anew for each chunk, and on
# S3 the lease, a second or more each time (W4 on Garage did not finish in
# a minute). One handle per process and store serves them all.
_reopened: dict[tuple[str, str], Store] = {}
_reopening = threading.Lock()
# A child made by fork() must not use its parent's handles (see below).
os.register_at_fork(after_in_child=_reopened.clear)


def _reopen(url: str, options: dict[str, Any]) -> Store:
    """Unpickles a :class:`Store`: opens it again (see ``Store.__reduce__``),
    or returns the handle an earlier copy in this process opened with the
    same URL and options, if it is still open."""
    key = (url, repr(sorted(options.items())))
    with _reopening:
        store = _reopened.get(key)
        if store is None or store not in _open_stores:
            store = _reopened[key] = open(url, **options)
        return store


def _documented_defaults() -> dict[str, str]:
    """The core's defaults of the options of :func:`open`, as its docstring shows them."""
    values = _anthill.store_defaults()
    shown = {name: str(value) for name, value in values.items()}
    pad_size = values["pad_size"]
    shown["pad_size"] = f"{pad_size >> 20} MiB" if pad_size % (1 << 20) == 0 else f"{pad_size} B"
    return shown


# The defaults live in the core; the docstring shows them as it has them.
open.__doc__ = (open.__doc__ or "").format(**_documented_defaults())
