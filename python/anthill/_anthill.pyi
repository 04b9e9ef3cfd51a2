"""The compiled core (Rust, pyo3). Private: use :mod:`anthill`, whose
:class:`anthill.Store` wraps :class:`NativeStore`.

Conventions of every method: long work runs with the GIL released; errors are
the classes of :mod:`anthill._errors`; an exception raised by a callback is
re-raised unchanged. ``data`` is any buffer: a C-contiguous one is used in place
(no copy: do not change it while the put runs), another is copied once into C
order. Results are ``bytes``.
"""

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar, final, overload

from typing_extensions import Buffer

from ._summary import BackendStats, CompactReport, ItemInfo, StorageSummary, VerifyReport

__all__ = [
    "CoreCall",
    "EventLoopBridge",
    "NativeItemReader",
    "NativeStore",
    "NativeStreams",
    "__version__",
    "is_credential",
    "is_url",
    "schema",
    "store_defaults",
]

class _ArrayLike(Protocol):
    # A numpy array (whose stubs declare the buffer protocol only for Python >= 3.12).
    @property
    def __array_interface__(self) -> dict[str, Any]: ...

_Data: TypeAlias = Buffer | _ArrayLike

__version__: str

def store_defaults() -> dict[str, int]:
    """The values the core gives the options of ``anthill.open`` left out:
    ``pad_size``, ``reservation_concurrency``, ``upload_concurrency``,
    ``download_concurrency``, ``retry_attempts``."""

def is_url(location: str) -> bool:
    """Whether ``location`` names a store by URL (else it is a folder path)."""

def is_credential(name: str) -> bool:
    """Whether the backend option ``name`` holds a credential (never shown,
    logged or pickled)."""

def schema() -> dict[str, list[tuple[str, str]]]:
    """Every class the core builds in Python (events, reports): its fields
    and their Python types, in order, as the core declares them."""

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

# A method whose operation has an ``*_async`` twin serves both: it takes the
# caller's event loop first, ``None`` to run to completion (the GIL released)
# and return the result, an ``EventLoopBridge`` to return an awaitable.
# Arguments are passed as the user gave them: the core checks them and fills
# in every default (see ``store_defaults``).

_Callback: TypeAlias = Callable[[Any], Any] | None

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
        reservation_concurrency: int | None = None,
        upload_concurrency: int | None = None,
        download_concurrency: int | None = None,
        retry_attempts: int | None = None,
        state_dir: str | None = None,
        allow_rollback: object = None,
        backend_options: Mapping[str, object] | None = None,
        create: bool = True,
    ) -> NativeStore:
        """Opens (creating if needed) the store at ``url`` (a backend URL).
        ``state_dir``: where this machine remembers each store's log position
        (``None``: no rollback check); ``allow_rollback``: open a store behind it;
        ``create=False``: open only an existing store, creating nothing."""

    @property
    def url(self) -> str:
        """The backend URL, credentials redacted."""

    @overload
    def store_item(
        self,
        event_loop: None,
        key: str,
        data: _Data,
        callback: _Callback,
        *,
        overwrite: bool,
        resume: bool,
        max_new_pads: int | None,
    ) -> None: ...
    @overload
    def store_item(
        self,
        event_loop: EventLoopBridge,
        key: str,
        data: _Data,
        callback: _Callback,
        *,
        overwrite: bool,
        resume: bool,
        max_new_pads: int | None,
    ) -> _AsyncCall[None]: ...
    @overload
    def fetch_item(self, event_loop: None, key: str, callback: _Callback) -> bytes: ...
    @overload
    def fetch_item(
        self, event_loop: EventLoopBridge, key: str, callback: _Callback
    ) -> _AsyncCall[bytes]: ...
    @overload
    def remove_item(self, event_loop: None, key: str) -> None: ...
    @overload
    def remove_item(self, event_loop: EventLoopBridge, key: str) -> _AsyncCall[None]: ...
    @overload
    def rename_item(self, event_loop: None, old: str, new: str, *, overwrite: bool) -> None: ...
    @overload
    def rename_item(
        self, event_loop: EventLoopBridge, old: str, new: str, *, overwrite: bool
    ) -> _AsyncCall[None]: ...
    @overload
    def verify(self, event_loop: None, deep: bool, callback: _Callback) -> VerifyReport: ...
    @overload
    def verify(
        self, event_loop: EventLoopBridge, deep: bool, callback: _Callback
    ) -> _AsyncCall[VerifyReport]: ...
    @overload
    def compact(self, event_loop: None, callback: _Callback) -> CompactReport: ...
    @overload
    def compact(
        self, event_loop: EventLoopBridge, callback: _Callback
    ) -> _AsyncCall[CompactReport]: ...
    def pad_usage(self) -> tuple[int, list[tuple[int, int]], int]:
        """``(pad_size, [(ordinal, used bytes)], largest free run)``, from memory."""

    @overload
    def refresh(self, event_loop: None) -> None: ...
    @overload
    def refresh(self, event_loop: EventLoopBridge) -> _AsyncCall[None]: ...
    @overload
    def summary(self, event_loop: None) -> StorageSummary: ...
    @overload
    def summary(self, event_loop: EventLoopBridge) -> _AsyncCall[StorageSummary]: ...
    @overload
    def check_allocation_possible(self, event_loop: None, size: int) -> int | None: ...
    @overload
    def check_allocation_possible(
        self, event_loop: EventLoopBridge, size: int
    ) -> _AsyncCall[int | None]: ...
    def keys(self) -> list[str]:
        """The committed keys, sorted."""

    def pending_items(self) -> list[tuple[str, int]]:
        """Keys with an interrupted upload and their sizes, sorted by key."""

    def list_items(self) -> list[ItemInfo]:
        """Every stored item, sorted by key."""

    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (committed)."""

    def len(self) -> int:
        """The number of stored (committed) keys."""

    @overload
    def flush(self, event_loop: None) -> None: ...
    @overload
    def flush(self, event_loop: EventLoopBridge) -> _AsyncCall[None]: ...
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
    @overload
    def store_file(
        self,
        event_loop: None,
        key: str,
        path: str | None,
        fd: int | None,
        offset: int,
        callback: _Callback,
        *,
        overwrite: bool,
        resume: bool,
        max_new_pads: int | None,
    ) -> None: ...
    @overload
    def store_file(
        self,
        event_loop: EventLoopBridge,
        key: str,
        path: str | None,
        fd: int | None,
        offset: int,
        callback: _Callback,
        *,
        overwrite: bool,
        resume: bool,
        max_new_pads: int | None,
    ) -> _AsyncCall[None]: ...
    @overload
    def fetch_file(
        self, event_loop: None, key: str, path: str | None, writer: Any, callback: _Callback
    ) -> int: ...
    @overload
    def fetch_file(
        self,
        event_loop: EventLoopBridge,
        key: str,
        path: str | None,
        writer: Any,
        callback: _Callback,
    ) -> _AsyncCall[int]: ...
    @overload
    def fetch_range(self, event_loop: None, key: str, offset: int, length: int) -> bytes: ...
    @overload
    def fetch_range(
        self, event_loop: EventLoopBridge, key: str, offset: int, length: int
    ) -> _AsyncCall[bytes]: ...
    def open_item(self, key: str) -> NativeItemReader: ...

@final
class NativeItemReader:
    """An item opened for reads of its ranges."""

    @property
    def size(self) -> int: ...
    def read_range(self, offset: int, length: int) -> bytes: ...
