"""A ready callback that shows what a put or a get is doing.

``anthill.progress`` (an instance of :class:`Progress`) draws three bars for a
put (reserved pads, uploaded bytes, committed pads) and one for a get, with
``tqdm.auto`` (a terminal or Jupyter), and asks before new pads are reserved::

    store.store_item("video", data, callback=anthill.progress)
    # Store 12.0 MiB? Storage: 3.5 MiB used of 4.0 MiB, 512.0 KiB free,
    #   1 pad (+3 needed), cost 0.03  [y/N]

Without a terminal to ask on it declines (the put raises
:class:`~anthill.OperationCancelledError`, nothing is spent) unless made with
``Progress(assume_yes=True)``::

    store.store_item("video", data, callback=anthill.Progress(assume_yes=True))

Off a terminal (a log file, a pipe) it draws no bars: each phase ends with
one plain line, such as ``uploaded: 12.0 MiB/12.0 MiB``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from ._events import (
    ConfirmReservation,
    DownloadFinished,
    DownloadProgress,
    GetEvent,
    PutEvent,
    ReservationProgress,
    ReservingScratchpads,
    ScratchpadCommitComplete,
    StartingDownload,
    StartingUpload,
    StoreComplete,
    UploadProgress,
)

Bar = Any  # a tqdm bar (tqdm ships no type information)

__all__ = ["Progress", "describe_reservation", "format_bytes"]


def format_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe_reservation(event: ConfirmReservation) -> str:
    """The confirmation question for ``event``, without the ``[y/N]``."""
    used = event.total_space - event.free_space
    pads = event.current_scratchpads
    cost = f", cost {event.estimated_cost}" if event.estimated_cost is not None else ""
    return (
        f"Store {format_bytes(event.data_size)}? "
        f"Storage: {format_bytes(used)} used of {format_bytes(event.total_space)}, "
        f"{format_bytes(event.free_space)} free, "
        f"{pads} pad{'' if pads == 1 else 's'} (+{event.needed} needed){cost}"
    )


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``input()`` asks the front end)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _cannot_ask_errors() -> tuple[type[Exception], ...]:
    """What ``input()`` raises in a Jupyter front end that cannot ask (headless)."""
    try:
        from IPython.core.error import StdinNotImplementedError
    except ImportError:
        return ()
    return (StdinNotImplementedError,)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A callback for puts and gets: progress bars plus the cost question.

    Args:
        assume_yes: answer "yes" to the cost question without asking (the
            question is still shown).
        interactive: whether the question may be asked; ``None`` (default)
            asks when standard input is a terminal or inside Jupyter, and
            otherwise declines rather than wait for an answer that cannot come.
        disable: ``True`` shows no progress, ``False`` draws bars wherever
            the output goes; ``None`` (default) draws them on a terminal or in
            Jupyter, and elsewhere writes one plain line as each phase ends.
        file: where bars and messages go (default: standard error).

    One instance follows one operation at a time and resets itself when the
    next one starts; give each of several concurrent operations its own.

    >>> store.store_item("k", data, callback=anthill.Progress(assume_yes=True))
    """

    assume_yes: bool
    interactive: bool | None
    disable: bool | None
    declined: str | None
    """Why the last cost question was answered "no" (``None`` if it was not)."""

    def __init__(
        self,
        *,
        assume_yes: bool = False,
        interactive: bool | None = None,
        disable: bool | None = None,
        file: TextIO | None = None,
    ) -> None:
        self.assume_yes = assume_yes
        self.interactive = interactive
        self.disable = disable
        self.declined = None
        self._file = file
        self._yes_hint = "callback=anthill.Progress(assume_yes=True)"
        self._bars: dict[str, Bar] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Progress(assume_yes={self.assume_yes!r}, interactive={self.interactive!r})"

    def __call__(self, event: PutEvent | GetEvent) -> bool:
        with self._lock:
            return self._handle(event)

    # --- the operation's life cycle -------------------------------------------

    def begin(self) -> None:
        """Forgets the previous operation (closing its bars). Called by
        :class:`~anthill.Store` when an operation starts; also done by itself
        when a first event of an operation arrives."""
        with self._lock:
            self._close_bars()
            self.declined = None

    def close(self) -> None:
        """Closes the open bars (after an error, say)."""
        with self._lock:
            self._close_bars()

    # --- events -----------------------------------------------------------------

    def _handle(self, event: PutEvent | GetEvent) -> bool:
        match event:
            case ConfirmReservation():
                self._close_bars()
                self.declined = None
                return self._confirm(event)
            case ReservingScratchpads(needed=needed):
                if "reserve" in self._bars:
                    self._close_bars()
                self._bar("reserve", "reserved pads", needed, "pad")
            case ReservationProgress(current=current, total=total):
                self._advance(self._bar("reserve", "reserved pads", total, "pad"), current)
            case StartingUpload(total_bytes=total_bytes, total_pads=total_pads):
                if "upload" in self._bars:
                    self._close_bars()
                self._bar("upload", "uploaded", total_bytes, "B", scale=True)
                self._bar("commit", "committed pads", total_pads, "pad")
            case UploadProgress(bytes_written=written, total_bytes=total):
                self._advance(self._bar("upload", "uploaded", total, "B", scale=True), written)
            case ScratchpadCommitComplete(index=index, total=total):
                self._advance(self._bar("commit", "committed pads", total, "pad"), index)
            case StoreComplete():
                self._close_bars()
            case StartingDownload(total_bytes=total_bytes):
                self._close_bars()
                self._bar("download", "downloaded", total_bytes, "B", scale=True)
            case DownloadProgress(bytes_read=read, total_bytes=total):
                self._advance(self._bar("download", "downloaded", total, "B", scale=True), read)
            case DownloadFinished():
                self._close_bars()
            case _:
                pass  # ScratchpadUploadComplete, UploadFinished: nothing to draw
        return True

    def _confirm(self, event: ConfirmReservation) -> bool:
        question = describe_reservation(event) + "  [y/N] "
        if self.assume_yes:
            self._say(question + "yes (assumed)")
            return True
        notebook = _in_notebook()
        interactive = self.interactive
        if interactive is None:
            interactive = notebook or _stdin_is_terminal()
        if not interactive:
            self.declined = (
                f"{event.needed} new pad{'' if event.needed == 1 else 's'} needed "
                f"and no terminal to confirm on; pass {self._yes_hint} to accept"
            )
            self._say(question + "no (" + self.declined + ")")
            return False
        cannot_ask: tuple[type[Exception], ...] = (EOFError, *_cannot_ask_errors())
        try:
            if notebook:
                answer = input(question)
            else:
                out = self._out()
                out.write(question)
                out.flush()
                answer = sys.stdin.readline()
        except cannot_ask:
            answer = ""
        if answer.strip().lower() in ("y", "yes"):
            return True
        self.declined = "declined"
        return False

    # --- drawing ----------------------------------------------------------------

    def _out(self) -> TextIO:
        return self._file if self._file is not None else sys.stderr

    def _say(self, message: str) -> None:
        if _in_notebook() and self._file is None:
            print(message)
        else:
            print(message, file=self._out(), flush=True)

    def _draws_bars(self) -> bool:
        """Whether bars go out (else one plain line per phase, or nothing)."""
        if self.disable is not None:
            return not self.disable
        if _in_notebook() and self._file is None:
            return True
        try:
            return self._out().isatty()
        except (AttributeError, ValueError):
            return False

    def _bar(self, name: str, label: str, total: int, unit: str, *, scale: bool = False) -> Bar:
        bar = self._bars.get(name)
        if bar is None and not self._draws_bars():
            bar = _PhaseLine(label, total, unit, scale, None if self.disable else self._out())
            self._bars[name] = bar
        elif bar is None:
            from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

            bar = tqdm(
                total=total,
                desc=label,
                unit=unit,
                unit_scale=scale,
                unit_divisor=1024 if scale else 1000,
                file=self._file,
                leave=True,
                dynamic_ncols=True,
            )
            self._bars[name] = bar
        elif bar.total != total:
            bar.total = total
        return bar

    @staticmethod
    def _advance(bar: Bar, value: int) -> None:
        if value > bar.n:
            bar.update(value - bar.n)

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class _PhaseLine:
    """A bar's stand-in off a terminal: counts like a tqdm bar, and on closing
    writes one plain line (no cursor movement, no carriage return), such as
    ``committed pads: 3/3``; with no ``out``, nothing."""

    def __init__(self, label: str, total: int, unit: str, scale: bool, out: TextIO | None) -> None:
        self.label, self.total, self.unit, self.scale, self.out = label, total, unit, scale, out
        self.n = 0

    def update(self, count: int) -> None:
        self.n += count

    def close(self) -> None:
        if self.out is None:
            return
        if self.scale:
            done = f"{format_bytes(self.n)}/{format_bytes(self.total)}"
        else:
            done = f"{self.n}/{self.total}"
        print(f"{self.label}: {done}", file=self.out, flush=True)
        self.out = None
