"""What a store reports about itself: the storage summary and, for simulated
backends, the backend's operation counters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BackendStats", "CompactReport", "OpStats", "StorageSummary", "VerifyReport"]


@dataclass(frozen=True, slots=True)
class StorageSummary:
    """The allocator's view of a store, from :meth:`Store.summary`.

    ``total_pads`` pads of ``pad_size`` bytes give ``total_space`` bytes, of
    which ``used_space`` hold items and ``free_space`` are free (all in bytes);
    ``items`` keys are stored and ``pending`` uploads are interrupted.

    >>> s = store.summary()
    >>> print(f"{s.used_space} of {s.total_space} bytes used in {s.total_pads} pads")
    """

    total_pads: int
    pad_size: int
    total_space: int
    used_space: int
    free_space: int
    items: int
    pending: int


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """One stored item, from :meth:`Store.list_items` (no data is read):
    its ``key``, ``size`` in bytes, and ``created``/``modified`` times in
    seconds since the Unix epoch.

    >>> for item in store.list_items():
    ...     print(item.size, item.key)
    """

    key: str
    size: int
    created: int
    modified: int


@dataclass(frozen=True, slots=True)
class OpStats:
    """Counters of one kind of backend operation: ``calls`` made, ``failures``
    among them, ``in_flight`` now and at most (``peak_in_flight``), payload
    ``bytes`` moved."""

    calls: int
    failures: int
    in_flight: int
    peak_in_flight: int
    bytes: int


@dataclass(frozen=True, slots=True)
class BackendStats:
    """Counters of a simulated (``sim+...``) backend, from
    :meth:`Store.backend_stats`: one :class:`OpStats` per operation
    (``durable_put``: puts that must reach stable storage before they return,
    such as index checkpoints), the number of pads reserved and their total
    simulated ``cost``.

    >>> store = anthill.open("sim+memory://demo?pad_price=0.01", secret="s")
    >>> store["k"] = b"v"
    >>> store.backend_stats().pads_reserved
    1
    """

    reserve: OpStats
    put: OpStats
    durable_put: OpStats
    verify: OpStats
    get: OpStats
    list: OpStats
    delete: OpStats
    pads_reserved: int
    cost: float
    pads_deleted: int = 0


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`Store.verify` found: ``items_checked`` items, the keys of
    the ``damaged`` ones (sorted), the object names of ``missing_pads`` (pads
    the index knows and the backend lacks), and ``pads_checked`` pads read
    and authenticated (``deep=True`` only).

    >>> report = store.verify()
    >>> report.ok, report.damaged
    (True, [])
    """

    items_checked: int
    damaged: list[str]
    missing_pads: list[str]
    pads_checked: int = 0

    @property
    def ok(self) -> bool:
        """Nothing damaged and no pad missing."""
        return not self.damaged and not self.missing_pads


@dataclass(frozen=True, slots=True)
class CompactReport:
    """What :meth:`Store.compact` did: pads before and after, bytes (and
    items) moved, and pads released (deleted from the backend).

    >>> report = store.compact()
    >>> print(f"{report.pads_before} -> {report.pads_after} pads")
    """

    pads_before: int
    pads_after: int
    bytes_moved: int
    items_moved: int = 0
    pads_released: int = 0
