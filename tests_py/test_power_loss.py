"""Power loss, simulated with a FUSE file system that forgets everything
not yet synced (``powerfs.py``, whose header states the model).

A SIGKILL keeps the page cache, so the crash suite cannot see a missing
fsync; these tests cut the power instead. The power-cut runs are
``power_harness.py`` (its header says what is checked); this file runs a
bounded number of cuts per fsync setting (``ANTHILL_POWER_CUTS``; CI: the
default below, ``scripts/reliability.sh``: 300 and more), appends each
run's summary to the JSON-lines file ``ANTHILL_POWER_REPORT`` if set, and
keeps each finding as a named regression test.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import anthill
import pytest
from anthill import _config
from power_harness import Mount, run

CUTS = int(os.environ.get("ANTHILL_POWER_CUTS", "12"))


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A disk (the backing folder) and a mount point to mount it at; this
    machine's memory of store logs lives on it too."""
    disk, mountpoint = tmp_path / "disk", tmp_path / "mnt"
    disk.mkdir()
    mountpoint.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(mountpoint / "state"))
    yield disk, mountpoint


def sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def record(report: dict[str, object]) -> None:
    target = os.environ.get("ANTHILL_POWER_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps(report) + "\n")


# The model itself: what is synced stays, what is not goes.


def test_the_file_system_keeps_only_what_was_synced(machine: tuple[Path, Path]) -> None:
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        (mnt / "kept").mkdir()
        sync(mnt)
        (mnt / "kept" / "synced").write_bytes(b"old")
        with open(mnt / "kept" / "synced", "r+b") as file:
            os.fsync(file.fileno())
            file.write(b"new, never synced")
        (mnt / "kept" / "name only").write_bytes(b"content never synced")
        sync(mnt / "kept")
        (mnt / "kept" / "never named").write_bytes(b"x")
        with open(mnt / "kept" / "never named", "rb") as file:
            os.fsync(file.fileno())  # its content, not its name
        (mnt / "lost").mkdir()  # the root is not synced again
        os.rename(mnt / "kept" / "synced", mnt / "kept" / "renamed")
    finally:
        mount.unmount()
    assert sorted(os.listdir(disk)) == ["kept"]
    assert sorted(os.listdir(disk / "kept")) == ["name only", "synced"]
    assert (disk / "kept" / "synced").read_bytes() == b"old"
    assert (disk / "kept" / "name only").read_bytes() == b""


def test_the_store_lock_excludes_other_holders_in_the_mount(machine: tuple[Path, Path]) -> None:
    """Writers of one store exclude each other with flock on its lock file;
    FUSE leaves such locks to the kernel, which must enforce them."""
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        with open(mnt / "lock", "w") as first, open(mnt / "lock", "w") as second:
            fcntl.flock(first, fcntl.LOCK_EX)
            with pytest.raises(BlockingIOError):
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(first, fcntl.LOCK_UN)
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        mount.unmount()


# Power cuts at random instants.


def test_power_cuts_with_fsync_lose_no_returned_item() -> None:
    report = run(CUTS, fsync=True, seed=1)
    record({**report.__dict__, "lost": dict(report.lost)})
    assert report.failures == []
    assert report.cuts == CUTS
    assert report.operations_done > 0 and report.items_checked > 0
    assert dict(report.lost) == {}


def test_power_cuts_without_fsync_never_return_wrong_data() -> None:
    report = run(CUTS, fsync=False, seed=2)
    record({**report.__dict__, "lost": dict(report.lost)})
    # Losses are allowed here (and counted); wrong bytes, a store that
    # cannot be opened, or a checker that fails are not.
    assert report.failures == []
    assert report.cuts == CUTS
    assert "store does not open" not in report.lost


# Findings, kept as regression tests.


def test_a_new_fsync_store_survives_a_power_cut_right_after_its_first_put(
    machine: tuple[Path, Path],
) -> None:
    """The store folder was created without flushing its entry into the
    parent folder: the cut took the whole folder, with the item."""
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "new" / "store", secret="s", pad_size=4096, fsync=True) as store:
            store.store_item("k", b"stored before the cut")
    finally:
        mount.unmount()
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "new" / "store", secret="s", fsync=True) as store:
            assert store.fetch_item("k") == b"stored before the cut"
    finally:
        mount.unmount()


def test_the_key_file_survives_a_power_cut_right_after_it_is_made(
    machine: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key file was flushed and linked, and its folder flushed, but the
    new folders above it were not: the cut took the key, so every store
    made with it could no longer be opened."""
    disk, mnt = machine
    monkeypatch.delenv("ANTHILL_SECRET", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(mnt / "home" / ".config"))
    mount = Mount(disk, mnt)
    try:
        key = _config.resolve_secret(None)
    finally:
        mount.unmount()
    mount = Mount(disk, mnt)
    try:
        assert _config.resolve_secret(None) == key
    finally:
        mount.unmount()


def test_a_store_without_fsync_keeps_its_metadata_through_a_power_cut(
    machine: tuple[Path, Path],
) -> None:
    """Without fsync the metadata's content was not flushed, while its name
    reached the disk whenever the folder was (a checkpoint flushes it, so
    does the OS): the cut left an empty metadata file, and the store (its
    id, so its keys) was lost for good, checkpoints included."""
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", pad_size=4096, fsync=False) as store:
            store.store_item("k", b"may be lost")
        sync(mnt / "store")  # the folder written out, the files not
        sync(mnt)
    finally:
        mount.unmount()
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", fsync=False) as store:
            assert "k" not in store  # never synced: lost, as documented
            store.store_item("k", b"stored again")
            assert store.fetch_item("k") == b"stored again"
    finally:
        mount.unmount()


def test_without_fsync_a_rewritten_pad_can_take_older_items_with_it(
    machine: tuple[Path, Path],
) -> None:
    """What the README says fsync=false can lose beyond recent items: a put
    of an item written straight to its pads (a pad or more) swaps a new
    file into a pad shared with an older item (here the item's tail, in the
    free space of the old item's pad); if the folder reaches the disk before
    the new file's content, the pad is empty after the cut and the older
    item fails its integrity check (never wrong data)."""
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", pad_size=16384, fsync=False) as store:
            store.store_item("old", b"o" * 1000)
        mount.send("sync")  # the machine sat idle: everything written out
        with anthill.open(mnt / "store", secret="s", fsync=False) as store:
            # A new pad, and the old item's pad for the rest.
            store.store_item("new", b"n" * (16384 + 8000))
            assert store.summary().total_pads == 2
        sync(mnt / "store" / "p")  # the OS wrote the folder out, not the file
    finally:
        mount.unmount()
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", fsync=False) as store:
            assert "old" in store
            with pytest.raises(anthill.IntegrityError):
                store.fetch_item("old")
    finally:
        mount.unmount()


def test_without_fsync_a_written_back_pad_keeps_older_items(
    machine: tuple[Path, Path],
) -> None:
    """Small items' pads are written back to stable storage whatever the
    fsync setting: a small put into a pad shared with an older item, written
    back at close, cannot take the older item with it."""
    disk, mnt = machine
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", pad_size=4096, fsync=False) as store:
            store.store_item("old", b"o" * 100)
        mount.send("sync")  # the machine sat idle: everything written out
        with anthill.open(mnt / "store", secret="s", fsync=False) as store:
            store.store_item("new", b"n" * 100)  # in the log, then into the same pad
            assert store.summary().total_pads == 1
        sync(mnt / "store" / "p")  # the OS wrote the folder out
    finally:
        mount.unmount()
    mount = Mount(disk, mnt)
    try:
        with anthill.open(mnt / "store", secret="s", fsync=False) as store:
            assert store.fetch_item("old") == b"o" * 100
    finally:
        mount.unmount()
