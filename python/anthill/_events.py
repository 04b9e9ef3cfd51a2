"""Progress events handed to callbacks, one at a time, in order.

Each event is a small frozen class; a ``match`` statement is the intended way
to consume them::

    def on_event(event: anthill.PutEvent) -> bool | None:
        match event:
            case anthill.ConfirmReservation(needed=n, estimated_cost=cost):
                return n <= 3                      # False cancels: nothing spent
            case anthill.UploadProgress(bytes_written=done, total_bytes=total):
                print(f"{done}/{total} bytes")
        return None                                # True or None: go on

Counters are monotonic and end at their total. No event follows
``StoreComplete``, ``DownloadFinished`` or an error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfirmReservation",
    "DownloadFinished",
    "DownloadProgress",
    "GetEvent",
    "OperationProgress",
    "PutEvent",
    "ReservationProgress",
    "ReservingScratchpads",
    "ScratchpadCommitComplete",
    "ScratchpadUploadComplete",
    "StartingDownload",
    "StartingUpload",
    "StoreComplete",
    "UploadFinished",
    "UploadProgress",
]


class PutEvent:
    """Base class of the events of ``store_item``."""

    __slots__ = ()


class GetEvent:
    """Base class of the events of ``fetch_item``."""

    __slots__ = ()


# --- put events, in the order a put emits them ------------------------------


@dataclass(frozen=True, slots=True)
class ReservingScratchpads(PutEvent):
    """New pads are about to be reserved: ``needed`` of them."""

    needed: int


@dataclass(frozen=True, slots=True)
class ConfirmReservation(PutEvent):
    """The item does not fit in free space: ``needed`` new pads must be
    reserved (the costly act). Return ``False`` to decline; nothing is spent.

    The figures are the store's state *before* this put: ``total_space`` and
    ``free_space`` in bytes, ``current_scratchpads`` pads, ``data_size`` the
    item's size in bytes, ``estimated_cost`` the price of the new pads where
    the backend has one (else ``None``).
    """

    needed: int
    data_size: int
    total_space: int
    free_space: int
    current_scratchpads: int
    estimated_cost: str | None


@dataclass(frozen=True, slots=True)
class ReservationProgress(PutEvent):
    """``current`` of ``total`` new pads are reserved and recorded."""

    current: int
    total: int


@dataclass(frozen=True, slots=True)
class StartingUpload(PutEvent):
    """The upload of ``total_bytes`` bytes over ``total_pads`` pads starts."""

    total_bytes: int
    total_pads: int


@dataclass(frozen=True, slots=True)
class UploadProgress(PutEvent):
    """``bytes_written`` of ``total_bytes`` bytes are uploaded."""

    bytes_written: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class ScratchpadUploadComplete(PutEvent):
    """``index`` of ``total`` pads are uploaded (not yet verified)."""

    index: int
    total: int


@dataclass(frozen=True, slots=True)
class ScratchpadCommitComplete(PutEvent):
    """``index`` of ``total`` pads are committed: durably accepted by the
    backend and verified."""

    index: int
    total: int


@dataclass(frozen=True, slots=True)
class UploadFinished(PutEvent):
    """Every pad of the item is committed."""


@dataclass(frozen=True, slots=True)
class StoreComplete(PutEvent):
    """The key is recorded in the index: the item is stored. The last event."""


# --- get events --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartingDownload(GetEvent):
    """The download of ``total_bytes`` bytes starts."""

    total_bytes: int


@dataclass(frozen=True, slots=True)
class DownloadProgress(GetEvent):
    """``bytes_read`` of ``total_bytes`` bytes are downloaded and verified."""

    bytes_read: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class DownloadFinished(GetEvent):
    """The item is downloaded. The last event."""


# --- store-wide operations ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperationProgress:
    """Progress of :meth:`Store.verify` (``operation="verify"``: pads read of
    pads to read) or :meth:`Store.compact` (``"compact"``: items moved of items
    to move). Not a put or get event; the last one has ``done == total``."""

    operation: str
    done: int
    total: int
