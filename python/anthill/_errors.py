"""The exceptions anthill raises: one root, one class per case a user can act on.

Every error of the Rust core maps onto one of these classes (see
``src/python/errors.rs``). An exception raised by *your* callback is not
wrapped: it reaches you unchanged.

>>> import anthill
>>> try:
...     store.fetch_item("missing")
... except anthill.KeyNotFoundError as error:
...     print(error.key, "is not stored")
"""

from __future__ import annotations

__all__ = [
    "AnthillError",
    "BackendError",
    "IntegrityError",
    "InvalidInputError",
    "KeyExistsError",
    "KeyNotFoundError",
    "OperationCancelledError",
    "UploadPendingError",
]


class AnthillError(Exception):
    """The root of every exception anthill raises."""


class KeyNotFoundError(AnthillError, KeyError):
    """The key is not in the store. Also a :class:`KeyError`, so
    ``store.get(key)`` and ``except KeyError`` work as for a dict.

    ``key`` is the missing key (``None`` if unknown).
    """

    key: str | None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.key = None

    def __str__(self) -> str:
        # KeyError quotes its message (it shows repr(key)); ours is a sentence.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class KeyExistsError(AnthillError):
    """The key is already stored; pass ``overwrite=True`` to replace it
    (``--force`` on the command line). ``key`` is the key."""

    key: str | None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.key = None


class UploadPendingError(AnthillError):
    """The key has an interrupted (or still running) upload. Retry with
    ``resume=True`` to finish it, or remove the key. ``key`` is the key."""

    key: str | None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.key = None


class OperationCancelledError(AnthillError):
    """The operation was cancelled before it spent anything more: a callback
    returned ``False`` (at ``ConfirmReservation``: the user said "no"), or the
    new pads needed exceed ``max_new_pads``."""


class BackendError(AnthillError):
    """The backend (pad network) is unreachable or kept failing after retries:
    check the URL, the credentials and the network, then retry."""


class IntegrityError(AnthillError):
    """Stored content failed authentication: a wrong secret, tampering or
    corruption. anthill never returns wrong data instead."""


class InvalidInputError(AnthillError, ValueError):
    """An argument anthill cannot accept (for example data that is not
    bytes-like, or an unusable secret). Also a :class:`ValueError`."""
