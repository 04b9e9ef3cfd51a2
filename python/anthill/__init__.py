"""anthill: a private, encrypted, mutable key-value store (``str`` -> ``bytes``)
kept in fixed-size pads on a backend (a local folder, memory, S3, ...), with a
memory allocator that reuses free space and reserves new pads only after you
confirm their cost.

>>> import anthill
>>> store = anthill.open("memory://demo", secret="not so secret")
>>> store.store_item("notes/today", b"buy milk", callback=anthill.progress)
>>> store.fetch_item("notes/today")
b'buy milk'
>>> store.summary().items
1

Events (``match`` on them in a callback), exceptions, :class:`Progress` and the
storage summary are all importable from here.
"""

from __future__ import annotations

from ._anthill import __version__
from ._errors import (
    AnthillError,
    BackendError,
    IntegrityError,
    InvalidInputError,
    KeyExistsError,
    KeyNotFoundError,
    OperationCancelledError,
    UploadPendingError,
)
from ._events import (
    ConfirmReservation,
    DownloadFinished,
    DownloadProgress,
    GetEvent,
    OperationProgress,
    PutEvent,
    ReservationProgress,
    ReservingScratchpads,
    ScratchpadCommitComplete,
    ScratchpadUploadComplete,
    StartingDownload,
    StartingUpload,
    StoreComplete,
    UploadFinished,
    UploadProgress,
)
from ._progress import Progress
from ._store import (
    AsyncGetCallback,
    AsyncPutCallback,
    GetCallback,
    OperationCallback,
    PutCallback,
    Store,
    StoreKeys,
    open,
)
from ._stream import ItemReader
from ._summary import (
    BackendStats,
    CompactReport,
    ItemInfo,
    OpStats,
    StorageSummary,
    VerifyReport,
)

progress: Progress = Progress()
"""A ready callback: progress bars for puts and gets, and the cost question
before new pads are reserved (declined when there is no terminal to ask on).

>>> store.store_item("big", data, callback=anthill.progress)
"""

__all__ = [
    "AnthillError",
    "AsyncGetCallback",
    "AsyncPutCallback",
    "BackendError",
    "BackendStats",
    "CompactReport",
    "ConfirmReservation",
    "DownloadFinished",
    "DownloadProgress",
    "GetCallback",
    "GetEvent",
    "IntegrityError",
    "InvalidInputError",
    "ItemInfo",
    "ItemReader",
    "KeyExistsError",
    "KeyNotFoundError",
    "OpStats",
    "OperationCallback",
    "OperationCancelledError",
    "OperationProgress",
    "Progress",
    "PutCallback",
    "PutEvent",
    "ReservationProgress",
    "ReservingScratchpads",
    "ScratchpadCommitComplete",
    "ScratchpadUploadComplete",
    "StartingDownload",
    "StartingUpload",
    "StorageSummary",
    "Store",
    "StoreComplete",
    "StoreKeys",
    "UploadFinished",
    "UploadPendingError",
    "UploadProgress",
    "VerifyReport",
    "__version__",
    "open",
    "progress",
]
