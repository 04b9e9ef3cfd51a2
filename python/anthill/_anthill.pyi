"""The compiled core (Rust, pyo3). Private: use :mod:`anthill`, whose
:class:`anthill.Store` wraps :class:`NativeStore`.

Conventions of every method: long work runs with the GIL released; errors are
the classes of :mod:`anthill._errors`; an exception raised by a callback is
re-raised unchanged. ``data`` is any buffer: a C-contiguous one is used in place
(no copy: do not change it while the put runs), another is copied once into C
order. Results are ``bytes``.
"""

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, TypeVar, final

from typing_extensions import Buffer

from ._summary import BackendStats, StorageSummary

__all__ = [
    "CoreCall",
    "EventLoopBridge",
    "NativeItemReader",
    "NativeStore",
    "NativeStreams",
    "__version__",
]

class _ArrayLike(Protocol):
    # A numpy array (whose stubs declare the buffer protocol only for Python >= 3.12).
    @property
    def __array_interface__(self) -> dict[str, Any]: ...

_Data: TypeAlias = Buffer | _ArrayLike

__version__: str

_T = TypeVar("_T")

@final
class EventLoopBridge:
    """Completes the async calls of one event loop, in batches (one per loop)."""

    def __new__(cls, event_loop: asyncio.AbstractEventLoop) -> EventLoopBridge: ...

@final
class CoreCall:
    """The core side of an async call."""

    def cancel(self) -> None:
        """Drops the core's future (a no-op once it has finished)."""

_AsyncCall: TypeAlias = tuple[asyncio.Future[_T], CoreCall]

@final
class NativeStore:
    """One open store. Thread-safe; cheap to share."""

    @staticmethod
    def open(
        url: str,
        secret: bytes,
        *,
        pad_size: int | None = None,
        max_new_pads: int | None = None,
        reservation_concurrency: int = 20,
        upload_concurrency: int = 20,
        download_concurrency: int = 20,
        retry_attempts: int = 10,
        state_dir: str | None = None,
        allow_rollback: bool = False,
        backend_options: list[tuple[str, str]] = ...,
    ) -> NativeStore:
        """Opens (creating if needed) the store at ``url`` (a backend URL).
        ``state_dir``: where this machine remembers each store's log position
        (``None``: no rollback check); ``allow_rollback``: open a store behind it."""

    @property
    def url(self) -> str:
        """The backend URL."""

    def store_item(
        self,
        key: str,
        data: _Data,
        callback: Callable[[Any], Any] | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None:
        """Stores ``data`` under ``key``; the callback may not be ``async def``."""

    def store_item_async(
        self,
        event_loop: EventLoopBridge,
        key: str,
        data: _Data,
        callback: Callable[[Any], Any] | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> _AsyncCall[None]:
        """Awaitable ``store_item``; the callback may be ``async def``. Must be
        called with an asyncio event loop running."""

    def fetch_item(self, key: str, callback: Callable[[Any], Any] | None = None) -> bytes:
        """The data stored under ``key``."""

    def fetch_item_async(
        self, event_loop: EventLoopBridge, key: str, callback: Callable[[Any], Any] | None = None
    ) -> _AsyncCall[bytes]:
        """Awaitable ``fetch_item``."""

    def remove_item(self, key: str) -> None:
        """Removes ``key``."""

    def remove_item_async(self, event_loop: EventLoopBridge, key: str) -> _AsyncCall[None]:
        """Awaitable ``remove_item``."""

    def rename_item(self, old: str, new: str, *, overwrite: bool = False) -> None:
        """Moves the item ``old`` to ``new`` (one index record, no data moved)."""

    def rename_item_async(
        self, event_loop: EventLoopBridge, old: str, new: str, *, overwrite: bool = False
    ) -> _AsyncCall[None]:
        """Awaitable ``rename_item``."""

    def verify(
        self, deep: bool = True, callback: Callable[[Any], bool | None] | None = None
    ) -> tuple[int, list[str], list[str], int]:
        """``(items_checked, damaged keys, missing pad names, pads_checked)``."""

    def compact(
        self, callback: Callable[[Any], bool | None] | None = None
    ) -> tuple[int, int, int, int, int]:
        """``(pads_before, pads_after, bytes_moved, items_moved, pads_released)``."""

    def pad_usage(self) -> tuple[int, list[tuple[int, int]], int]:
        """``(pad_size, [(ordinal, used bytes)], largest free run)``, from memory."""

    def summary(self) -> StorageSummary:
        """The allocator's storage summary."""

    def summary_async(self, event_loop: EventLoopBridge) -> _AsyncCall[StorageSummary]:
        """Awaitable ``summary``."""

    def check_allocation_possible(self, size: int) -> int | None:
        """``None``, or the new pads a put of ``size`` bytes needs."""

    def check_allocation_possible_async(
        self, event_loop: EventLoopBridge, size: int
    ) -> _AsyncCall[int | None]:
        """Awaitable ``check_allocation_possible``."""

    def keys(self) -> list[str]:
        """The committed keys, sorted."""

    def list_items(self) -> list[tuple[str, int, int, int]]:
        """``(key, size, created, modified)`` of every stored item, sorted by key."""

    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (committed)."""

    def len(self) -> int:
        """The number of stored (committed) keys."""

    def flush(self) -> None:
        """Writes back every small item held only in the log."""

    def flush_async(self, event_loop: EventLoopBridge) -> _AsyncCall[None]:
        """Awaitable ``flush``."""

    def unflushed_bytes(self) -> int:
        """Bytes of small items held only in the log."""

    def close(self) -> None:
        """Flushes and closes the store; later calls raise ``InvalidInputError``."""

    def backend_stats(self) -> BackendStats | None:
        """Counters of a ``sim+`` backend, else ``None``."""

@final
class NativeStreams:
    """The streaming operations of one store (files, ranges)."""

    def __new__(cls, store: NativeStore) -> NativeStreams: ...
    def store_file(
        self,
        key: str,
        path: str | None = None,
        fd: int | None = None,
        offset: int = 0,
        callback: Callable[[Any], Any] | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> None: ...
    def store_file_async(
        self,
        event_loop: EventLoopBridge,
        key: str,
        path: str | None = None,
        fd: int | None = None,
        offset: int = 0,
        callback: Callable[[Any], Any] | None = None,
        *,
        overwrite: bool = False,
        resume: bool = False,
        max_new_pads: int | None = None,
    ) -> _AsyncCall[None]: ...
    def fetch_file(
        self,
        key: str,
        path: str | None = None,
        writer: Any = None,
        callback: Callable[[Any], Any] | None = None,
    ) -> int: ...
    def fetch_file_async(
        self,
        event_loop: EventLoopBridge,
        key: str,
        path: str | None = None,
        writer: Any = None,
        callback: Callable[[Any], Any] | None = None,
    ) -> _AsyncCall[int]: ...
    def fetch_range(self, key: str, offset: int, length: int) -> bytes: ...
    def fetch_range_async(
        self, event_loop: EventLoopBridge, key: str, offset: int, length: int
    ) -> _AsyncCall[bytes]: ...
    def open_item(self, key: str) -> NativeItemReader: ...

@final
class NativeItemReader:
    """An item opened for reads of its ranges."""

    @property
    def size(self) -> int: ...
    def read_range(self, offset: int, length: int) -> bytes: ...
