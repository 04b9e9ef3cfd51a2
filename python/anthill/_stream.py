"""Items larger than memory: what :meth:`Store.store_file`, :meth:`Store.fetch_file`
and :meth:`Store.open_item` do on the Python side.

A source that is a path, or a file object over a regular file, is read by the
core a pad at a time, as each pad's upload starts. A source whose size is not
known in advance (a pipe, a socket, an in-memory stream) is first copied to an
anonymous temporary file (in ``TMPDIR``), a MiB at a time: its size must be
known before any new pad is confirmed (``ConfirmReservation`` states exactly
what the put will spend, and nothing more is spent), and the copy keeps memory
bounded whatever the size.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from . import _anthill
from ._errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from typing_extensions import Buffer

Source: TypeAlias = str | os.PathLike[str] | IO[bytes]
"""What :meth:`Store.store_file` reads: a path, or a readable binary file object."""
Dest: TypeAlias = str | os.PathLike[str] | IO[bytes]
"""Where :meth:`Store.fetch_file` writes: a path, or a writable binary file object."""

_COPY_CHUNK = 1 << 20
# Reads of an ItemReader: the least fetched after a seek, and the most read
# ahead (doubling while reads are sequential).
_FIRST_FETCH = 256 << 10
_MOST_AHEAD = 16 << 20


class FileArgs:
    """A source as the core takes it: a path, or an open file's descriptor
    and the offset to read from. Holds the spooled copy of a source of
    unknown size until closed."""

    __slots__ = ("fd", "file_object", "offset", "path", "spool")

    def __init__(self) -> None:
        self.path: str | None = None
        self.fd: int | None = None
        self.offset = 0
        self.file_object: IO[bytes] | None = None
        self.spool: IO[bytes] | None = None

    def native(self) -> tuple[str | None, int | None, int]:
        """``(path, fd, offset)``, the core's arguments for the source."""
        return self.path, self.fd, self.offset

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def done(self) -> None:
        """Leaves a source file object positioned after what was stored."""
        if self.file_object is not None and self.spool is None:
            self.file_object.seek(0, os.SEEK_END)


def _path(value: object) -> str | None:
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        return os.fsdecode(path)
    return None


def _binary_file(value: object, role: str, method: str) -> IO[bytes]:
    """``value`` as an open binary file object with a ``method`` (``read`` or
    ``write``), or an :class:`InvalidInputError` that says what it is instead."""
    readable = method == "read"
    if not callable(getattr(value, method, None)):
        kind = "readable" if readable else "writable"
        raise InvalidInputError(
            f"{role} must be a path or a {kind} binary file object, got {type(value).__name__}"
        )
    if getattr(value, "closed", False):
        raise InvalidInputError(f"{role} is a closed file object")
    if isinstance(value, io.TextIOBase):
        mode = "rb" if readable else "wb"
        raise InvalidInputError(f"{role} is a text file object; open it in binary mode ({mode!r})")
    return value  # type: ignore[return-value]


def source_args(source: object) -> FileArgs:
    """Resolves ``source`` without reading it (except to spool a stream)."""
    args = FileArgs()
    path = _path(source)
    if path is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0  # the core says what is wrong with it
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
            # A named pipe or a device (`<(command)`, /dev/stdin): no size.
            with open(path, "rb") as stream:
                args.spool = spool(stream)
            args.fd = args.spool.fileno()
            return args
        args.path = path
        return args
    file_object = _binary_file(source, "source", "read")
    args.file_object = file_object
    try:
        fd = file_object.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode) and file_object.seekable():
            args.fd = fd
            args.offset = file_object.tell()
            return args
    except (OSError, AttributeError, ValueError):
        pass  # no descriptor, or not a regular file: spooled below
    args.spool = spool(file_object)
    args.fd = args.spool.fileno()
    return args


def spool(stream: IO[bytes]) -> IO[bytes]:
    """Copies a stream of unknown size to an anonymous temporary file."""
    copy: IO[bytes] = tempfile.TemporaryFile(prefix="anthill-")  # noqa: SIM115
    try:
        while True:
            chunk = stream.read(_COPY_CHUNK)
            if not chunk:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidInputError(
                    f"source.read() returned {type(chunk).__name__}, not bytes; "
                    "open it in binary mode ('rb')"
                )
            copy.write(chunk)
        copy.flush()
    except OSError as error:
        copy.close()
        raise InvalidInputError(f"reading the source failed: {error}") from error
    except BaseException:
        copy.close()
        raise
    return copy


def dest_args(dest: object) -> tuple[str | None, IO[bytes] | None]:
    """``dest`` as the core takes it: a path, or a writable file object."""
    path = _path(dest)
    if path is not None:
        return path, None
    return None, _binary_file(dest, "dest", "write")


class ItemReader(io.BufferedIOBase):
    """A stored item as a read-only, seekable binary file (:meth:`Store.open_item`).

    Reads fetch only the pad segments under what is read; sequential reads fetch
    further ahead each time (several pads at once, concurrently), up to
    16 MiB. Every byte returned comes from a pad authenticated by its AEAD,
    at the version the item's index entry names (or a newer version, after
    checking the item is still the one stored). The item's whole digest is
    checked only by whole reads (:meth:`Store.fetch_item`,
    :meth:`Store.fetch_file`), since it covers every byte.

    The reader sees the item as it was when opened; if it is replaced or
    removed meanwhile, a read that meets the change raises
    :class:`IntegrityError` or :class:`KeyNotFoundError`.

    >>> with store.open_item("backup.zip") as f, zipfile.ZipFile(f) as z:
    ...     z.namelist()
    """

    def __init__(self, reader: _anthill.NativeItemReader, key: str) -> None:
        super().__init__()
        self._reader: _anthill.NativeItemReader | None = reader
        self.size: int = reader.size
        """The item's size in bytes."""
        self.name = key
        self._position = 0
        self._buffer = b""
        self._buffer_start = 0
        self._last_fetch = 0

    def __repr__(self) -> str:
        return f"ItemReader({self.name!r}, size={self.size})"

    @property
    def mode(self) -> str:
        return "rb"

    def readable(self) -> bool:
        self._open()
        return True

    def seekable(self) -> bool:
        self._open()
        return True

    def writable(self) -> bool:
        self._open()
        return False

    def _open(self) -> _anthill.NativeItemReader:
        if self._reader is None:
            raise ValueError("I/O operation on a closed ItemReader")
        return self._reader

    def close(self) -> None:
        self._reader = None
        self._buffer = b""
        super().close()

    def tell(self) -> int:
        self._open()
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._open()
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._position + offset
        elif whence == os.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def _buffered(self) -> memoryview:
        """What the buffer holds from the current position on."""
        at = self._position - self._buffer_start
        if 0 <= at < len(self._buffer):
            return memoryview(self._buffer)[at:]
        return memoryview(b"")

    def _fill(self, wanted: int) -> None:
        """Fetches from the current position: more than asked while reads
        are sequential, so the pads ahead come in concurrently."""
        reader = self._open()
        sequential = self._position == self._buffer_start + len(self._buffer) and self._buffer
        if sequential:
            length = min(max(self._last_fetch * 2, wanted), max(_MOST_AHEAD, wanted))
        else:
            length = max(wanted, _FIRST_FETCH)
        length = min(length, self.size - self._position)
        self._buffer = reader.read_range(self._position, length)
        self._buffer_start = self._position
        self._last_fetch = length

    def _chunks(self, size: int) -> Iterator[memoryview]:
        end = min(self._position + size, self.size)
        while self._position < end:
            available = self._buffered()
            if not available:
                self._fill(end - self._position)
                available = self._buffered()
            chunk = available[: end - self._position]
            self._position += len(chunk)
            yield chunk

    def read(self, size: int | None = -1) -> bytes:
        self._open()
        if size is None or size < 0:
            size = max(self.size - self._position, 0)
        return b"".join(self._chunks(size))

    def read1(self, size: int = -1) -> bytes:
        self._open()
        if size < 0:
            size = max(self.size - self._position, 0)
        for chunk in self._chunks(size):
            return bytes(chunk)  # what one fetch (or the buffer) holds
        return b""

    def readinto(self, buffer: Buffer) -> int:
        target = memoryview(buffer).cast("B")
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readinto1(self, buffer: Buffer) -> int:
        target = memoryview(buffer).cast("B")
        data = self.read1(len(target))
        target[: len(data)] = data
        return len(data)

    def detach(self) -> Any:
        raise io.UnsupportedOperation("an ItemReader has no raw stream to detach")
