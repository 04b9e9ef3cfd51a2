"""The ``anthill`` command (also ``python -m anthill``).

    anthill put KEY FILE|- [--force] [--yes] [--resume]  store a file (or standard input)
    anthill get KEY [-o FILE]                    write an item to a file (or standard output)
    anthill rm KEY                               remove an item
    anthill ls [-l]                              list the keys (-l: with sizes), pending ones marked
    anthill mv OLD NEW [--force]                 rename an item (no data moved)
    anthill verify [--quick]                     check every pad and item (exit 1 if damaged)
    anthill compact                              move items out of sparse pads, release empty ones
    anthill stats [--map]                        pads, space and items (--map: a picture of the pads)

``--store URL`` (or ``$ANTHILL_STORE``) picks the store; the default one lives
in your data folder. The secret comes from ``$ANTHILL_SECRET`` or your key file.
Only ``put`` creates things (the store, the key file); every other command on
a missing store or key file fails, naming what is missing.
``put`` asks before reserving new pads; ``--yes`` answers for you, and without
a terminal to ask on it declines rather than wait. Errors are one line on
standard error and a non-zero exit status (1; 2 for a usage error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from . import __version__
from ._errors import AnthillError, KeyExistsError, OperationCancelledError, UploadPendingError
from ._events import OperationProgress
from ._picture import to_text
from ._progress import Progress, format_bytes
from ._store import Store, open

__all__ = ["build_parser", "main"]

PROG = "anthill"


class CommandError(Exception):
    """A failure to report as one line (not a bug)."""


def _open(args: argparse.Namespace, *, create: bool = False) -> Store:
    """The store the command names; only a put may create it (and the key file)."""
    return open(args.store, create=create)


def _pending_hint(key: str) -> str:
    return (
        f"`{PROG} put --resume {key} FILE` with the same file finishes it, "
        f"`{PROG} rm {key}` discards it"
    )


def _cmd_put(args: argparse.Namespace) -> int:
    if args.file is None:
        if sys.stdin.isatty():
            raise CommandError(
                f"put {args.key} needs a FILE to store (or - to type the data on "
                "standard input, ended by Ctrl-D)"
            )
        args.file = "-"  # data piped in
    from_stdin = args.file == "-"
    progress = Progress(
        assume_yes=args.yes,
        # The data comes through standard input: no answer can come from it.
        interactive=False if from_stdin else None,
        disable=None,
    )
    progress._yes_hint = "--yes"
    # Streamed with bounded memory: a file a pad at a time, standard input
    # through a temporary copy (its size must be known before confirming).
    source: str | BinaryIO = sys.stdin.buffer if from_stdin else args.file
    if not from_stdin and not os.path.exists(args.file):
        raise CommandError(f"cannot read {args.file}: No such file or directory")
    try:
        with _open(args, create=True) as store:
            store.store_file(
                args.key, source, callback=progress, overwrite=args.force, resume=args.resume
            )
            with store.open_item(args.key) as item:
                size = item.size
    except OperationCancelledError as error:
        if progress.declined is not None:
            raise CommandError(f"not stored: {progress.declined}") from error
        raise
    except KeyExistsError as error:
        raise CommandError(
            f"key {args.key!r} is already stored; pass --force to replace it"
        ) from error
    except UploadPendingError as error:
        if args.resume:
            raise
        raise CommandError(
            f"key {args.key!r} has an interrupted upload: {_pending_hint(args.key)}"
        ) from error
    print(f"{PROG}: stored {args.key!r} ({format_bytes(size)})", file=sys.stderr)
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    progress = Progress(disable=None)
    with _open(args) as store:
        if args.output in (None, "-"):
            out: BinaryIO = sys.stdout.buffer
            store.fetch_file(args.key, out, callback=progress)
            out.flush()
        else:
            # Written beside FILE and renamed into place once verified.
            store.fetch_file(args.key, args.output, callback=progress)
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    with _open(args) as store:
        store.remove_item(args.key)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    with _open(args) as store:
        pending = store._pending_items()
        if not args.long:
            for key in store:
                print(key)
            _print_pending(pending, long=False)
            return 0
        for item in store.list_items():
            print(f"{item.size:>12}  {item.key}")
        _print_pending(pending, long=True)
        summary = store.summary()
        print(
            f"{summary.items} item{'' if summary.items == 1 else 's'}, "
            f"{format_bytes(summary.used_space)} used of {format_bytes(summary.total_space)} "
            f"in {summary.total_pads} pad{'' if summary.total_pads == 1 else 's'}"
        )
    return 0


def _print_pending(pending: list[tuple[str, int]], *, long: bool) -> None:
    """Lists keys with an interrupted upload, marked, and says how to settle them."""
    for key, size in pending:
        print(f"{size:>12}  {key} (pending)" if long else f"{key} (pending)")
    if pending:
        print(
            f"{PROG}: {len(pending)} pending (interrupted upload"
            f"{'' if len(pending) == 1 else 's'}): {_pending_hint('KEY')}",
            file=sys.stderr,
        )


def _cmd_mv(args: argparse.Namespace) -> int:
    with _open(args) as store:
        try:
            store.rename_item(args.old, args.new, overwrite=args.force)
        except KeyExistsError as error:
            raise CommandError(
                f"key {args.new!r} is already stored; pass --force to replace it"
            ) from error
    return 0


class _OperationBar:
    """A tqdm bar on standard error for verify and compact (none without a terminal)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar: Any = None  # a tqdm bar (tqdm ships no type information)

    def __call__(self, event: OperationProgress) -> bool:
        if not sys.stderr.isatty():
            return True
        if self.bar is None:
            from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

            self.bar = tqdm(total=event.total, unit=self.unit, desc=event.operation, leave=False)
        self.bar.total = event.total
        self.bar.n = event.done
        self.bar.refresh()
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_verify(args: argparse.Namespace) -> int:
    bar = _OperationBar("pad")
    try:
        with _open(args) as store:
            report = store.verify(deep=not args.quick, callback=bar)
    finally:
        bar.close()
    for name in report.missing_pads:
        print(f"missing pad: {name}")
    for key in report.damaged:
        print(f"damaged: {key}")
    verdict = "ok" if report.ok else "NOT OK"
    print(
        f"{verdict}: {report.items_checked} items checked, {report.pads_checked} pads read, "
        f"{len(report.damaged)} damaged, {len(report.missing_pads)} pads missing"
    )
    return 0 if report.ok else 1


def _cmd_compact(args: argparse.Namespace) -> int:
    bar = _OperationBar("item")
    try:
        with _open(args) as store:
            report = store.compact(callback=bar)
    finally:
        bar.close()
    print(
        f"{report.pads_before} -> {report.pads_after} pads "
        f"({report.pads_released} released), {report.items_moved} items "
        f"({format_bytes(report.bytes_moved)}) moved"
    )
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.map:
            print(to_text(store._pad_picture()))
            return 0
        s = store.summary()
        stats = store.backend_stats()
        rows = [
            ("store", store.url),
            ("pads", f"{s.total_pads} x {format_bytes(s.pad_size)}"),
            ("total space", f"{format_bytes(s.total_space)} ({s.total_space} bytes)"),
            ("used space", f"{format_bytes(s.used_space)} ({s.used_space} bytes)"),
            ("free space", f"{format_bytes(s.free_space)} ({s.free_space} bytes)"),
            ("items", str(s.items)),
            ("pending uploads", str(s.pending)),
        ]
        if stats is not None:
            rows.append(("pads reserved", f"{stats.pads_reserved} (cost {stats.cost:.2f})"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``anthill`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A private, encrypted key-value store kept in pads.",
        epilog="The secret comes from $ANTHILL_SECRET, else from your key file "
        "(created by the first put).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="the store: file:///path or a folder, memory://NAME, s3://bucket/prefix, "
        "sim+<url> (default: $ANTHILL_STORE, else the default store in your data folder)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    put = command("put", _cmd_put, "store a file (or standard input) under KEY")
    put.add_argument("key", metavar="KEY")
    put.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=None,
        help="a file, or - for standard input (left out: standard input, when it is "
        "not a terminal)",
    )
    put.add_argument("-f", "--force", action="store_true", help="replace KEY if it is stored")
    put.add_argument(
        "-y", "--yes", action="store_true", help="reserve the new pads needed without asking"
    )
    put.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted put of KEY (pending in ls) from the same file",
    )

    get = command("get", _cmd_get, "write the item stored under KEY")
    get.add_argument("key", metavar="KEY")
    get.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )

    rm = command("rm", _cmd_rm, "remove KEY, freeing its space")
    rm.add_argument("key", metavar="KEY")

    ls = command("ls", _cmd_ls, "list the stored keys")
    ls.add_argument("-l", "--long", action="store_true", help="with each item's size in bytes")

    mv = command("mv", _cmd_mv, "rename the item OLD to NEW (no data moved)")
    mv.add_argument("old", metavar="OLD")
    mv.add_argument("new", metavar="NEW")
    mv.add_argument("-f", "--force", action="store_true", help="replace NEW if it is stored")

    verify = command("verify", _cmd_verify, "check every pad and item; exit status 1 if not ok")
    verify.add_argument(
        "--quick", action="store_true", help="only check that every pad exists (read nothing)"
    )

    command("compact", _cmd_compact, "move items out of sparse pads and release emptied pads")

    stats = command("stats", _cmd_stats, "show pads, space and items of the store")
    stats.add_argument(
        "--map", action="store_true", help="draw the pads, one character each, shaded by fill"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (AnthillError, CommandError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`anthill get k | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
