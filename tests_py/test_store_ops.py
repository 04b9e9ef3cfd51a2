"""Store operations: rename_item, verify, compact and the picture of the pads,
on real folders and real subprocesses killed with SIGKILL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import anthill
import pytest
from conftest import SECRET


def value(tag: str, size: int) -> bytes:
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]


# --- rename ----------------------------------------------------------------------


def test_rename_moves_an_item_without_moving_data(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store("sim+memory://")
    store.store_item("small", b"tiny")  # held in the log, not yet in its pad
    store.store_item("large", value("large", 20_000))
    before = store.backend_stats()
    assert before is not None
    store.rename_item("small", "renamed-small")
    store.rename_item("large", "renamed-large")
    after = store.backend_stats()
    assert after is not None
    assert after.put.calls - before.put.calls == 0  # no pad written (only the log)
    assert "small" not in store and "large" not in store
    store.flush()  # the write-back of a renamed small item finds it by its new name
    assert store.fetch_item("renamed-small") == b"tiny"
    assert store.fetch_item("renamed-large") == value("large", 20_000)
    assert store.summary().items == 2


def test_rename_errors_are_those_of_store_item(store: anthill.Store) -> None:
    store.store_item("a", b"A")
    store.store_item("b", b"B")
    with pytest.raises(anthill.KeyNotFoundError):
        store.rename_item("missing", "c")
    with pytest.raises(anthill.KeyExistsError):
        store.rename_item("a", "b")
    assert store.fetch_item("a") == b"A" and store.fetch_item("b") == b"B"
    used = store.summary().used_space
    store.rename_item("a", "b", overwrite=True)
    assert list(store.keys()) == ["b"]
    assert store.fetch_item("b") == b"A"
    assert store.summary().used_space == used - 1  # the replaced item's space is freed
    store.rename_item("b", "b")  # to itself: nothing changes
    assert store.fetch_item("b") == b"A"


def test_rename_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=4096) as store:
        store.store_item("old", b"kept in the log")
        store.store_item("big", value("big", 9000))
        store.rename_item("old", "new")
        store.rename_item("big", "bigger")
    with anthill.open(path, secret=SECRET) as store:
        assert sorted(store.keys()) == ["bigger", "new"]
        assert store.fetch_item("new") == b"kept in the log"
        assert store.fetch_item("bigger") == value("big", 9000)


async def test_rename_item_async(store: anthill.Store) -> None:
    store.store_item("x", b"1")
    await store.rename_item_async("x", "y")
    assert store.fetch_item("y") == b"1"


RENAMER = r"""
import random, sys, hashlib
import anthill

path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
store = anthill.open(path)
names = {}
for key in store.keys():
    names[key.split("@")[0]] = key
for n in range(10_000):
    item = rng.choice(sorted(names))
    new = f"{item}@{seed}-{n}"
    print("BEGIN", flush=True)
    store.rename_item(names[item], new)
    names[item] = new
    print("DONE", flush=True)
"""


def test_rename_under_sigkill_leaves_each_item_under_one_name(tmp_path: Path) -> None:
    path = tmp_path / "store"
    sizes = [5, 300, 3000, 9000, 20_000]
    with anthill.open(path, secret=SECRET, pad_size=4096) as store:
        for i, size in enumerate(sizes * 2):
            store.store_item(f"item{i}@0", value(f"item{i}", size))
        unflushed = f"item{len(sizes) * 2}"
    # One small item left only in the log (the process ends without close).
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                f"import anthill, os; s = anthill.open({str(path)!r}); "
                f"s.store_item('{unflushed}@0', b'log only'); os._exit(0)"
            ),
        ],
        check=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
    )
    expected = {f"item{i}": value(f"item{i}", size) for i, size in enumerate(sizes * 2)}
    expected[unflushed] = b"log only"
    rng = random.Random(7)
    mid_rename = 0
    for round_number in range(12):
        renamer = subprocess.Popen(
            [sys.executable, "-c", RENAMER, str(path), str(round_number + 1)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "ANTHILL_SECRET": SECRET},
        )
        assert renamer.stdout is not None
        last = ""
        for _ in range(rng.randint(1, 40)):
            last = renamer.stdout.readline().strip()
            if not last:
                break
        renamer.send_signal(signal.SIGKILL)
        renamer.wait()
        renamer.stdout.close()
        mid_rename += last == "BEGIN"
        with anthill.open(path, secret=SECRET) as store:
            keys = list(store.keys())
            for item, data in expected.items():
                names = [k for k in keys if k.split("@")[0] == item]
                assert len(names) == 1, f"round {round_number}: {item} is under {names}"
                assert store.fetch_item(names[0]) == data
            assert len(keys) == len(expected)
            assert store.verify().ok
    assert mid_rename > 0  # some kills landed between BEGIN and DONE


# --- verify ----------------------------------------------------------------------


def _fill_folder_store(path: Path) -> dict[str, bytes]:
    rng = random.Random(3)
    items = {}
    with anthill.open(path, secret=SECRET, pad_size=4096) as store:
        for i in range(60):
            size = rng.choice([10, 200, 1500, 4096, 6000])
            items[f"k{i}"] = value(f"k{i}", size)
            store.store_item(f"k{i}", items[f"k{i}"])
    return items


def _unreadable_keys(path: Path, keys: list[str]) -> set[str]:
    bad = set()
    with anthill.open(path, secret=SECRET) as store:
        for key in keys:
            try:
                store.fetch_item(key)
            except anthill.AnthillError:
                bad.add(key)
    return bad


def test_verify_finds_a_deleted_a_truncated_and_a_flipped_pad(tmp_path: Path) -> None:
    path = tmp_path / "store"
    items = _fill_folder_store(path)
    with anthill.open(path, secret=SECRET) as store:
        report = store.verify()
        assert report.ok and report.items_checked == len(items)
        assert report.damaged == [] and report.missing_pads == []
        assert report.pads_checked > 0
    pads = sorted(p for p in (path / "p").iterdir() if p.stat().st_size > 100)
    deleted, truncated, flipped = pads[1], pads[len(pads) // 2], pads[-2]
    deleted.unlink()
    with truncated.open("r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    flipped.write_bytes(bytes(raw))

    affected = _unreadable_keys(path, list(items))
    assert 3 <= len(affected) < len(items)
    with anthill.open(path, secret=SECRET) as store:
        progress: list[anthill.OperationProgress] = []
        report = store.verify(callback=progress.append)
        assert not report.ok
        assert set(report.damaged) == affected
        assert report.damaged == sorted(report.damaged)
        assert report.missing_pads == [f"p/{deleted.name}"]
        assert report.items_checked == len(items)
        assert progress and progress[-1].done == progress[-1].total == report.pads_checked
        assert all(e.operation == "verify" for e in progress)
        # Shallow: only the missing pad (and the items in it) are found.
        quick = store.verify(deep=False)
        assert quick.missing_pads == [f"p/{deleted.name}"]
        assert set(quick.damaged) < affected and quick.damaged
        assert quick.pads_checked == 0
        # Verification changed nothing.
        assert store.summary().items == len(items)


def test_verify_counts_a_pad_never_written_as_present(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=4096) as store:
        store.store_item("one", b"x" * 100)
        # Reserved without a call on a folder, and never written: no file.
        with pytest.raises(anthill.OperationCancelledError):
            store.store_item(
                "big", b"y" * 40_000, callback=lambda e: not isinstance(e, anthill.StartingUpload)
            )
        report = store.verify()
        assert report.ok, report


# --- compact ---------------------------------------------------------------------


def _fill_and_thin(store: anthill.Store, count: int, seed: int) -> dict[str, bytes]:
    """``count`` items of mixed sizes, then 80% removed: the survivors."""
    rng = random.Random(seed)
    pad = store.summary().pad_size
    sizes = [50, 700, pad // 20, pad // 4, pad // 2, pad + pad // 3, 2 * pad + 123]
    items = {}
    for i in range(count):
        items[f"k{i}"] = value(f"{seed}-{i}", rng.choice(sizes))
        store.store_item(f"k{i}", items[f"k{i}"])
    for i in range(count):
        if i % 5:
            store.remove_item(f"k{i}")
            del items[f"k{i}"]
    return items


def test_compact_releases_pads_and_keeps_every_item(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store(f"sim+memory://c-{uuid.uuid4().hex}", pad_size=65536)
    items = _fill_and_thin(store, 1000, seed=1)
    before = store.summary()
    stats = store.backend_stats()
    assert stats is not None and stats.pads_deleted == 0
    progress: list[anthill.OperationProgress] = []
    report = store.compact(callback=progress.append)
    after = store.summary()
    stats = store.backend_stats()
    assert stats is not None
    assert report.pads_before == before.total_pads
    assert report.pads_after == after.total_pads < before.total_pads
    assert stats.pads_deleted == report.pads_released == before.total_pads - after.total_pads
    assert stats.pads_reserved == before.total_pads  # compaction reserved none
    live = sum(len(v) for v in items.values())
    ideal = -(-live // after.pad_size)
    assert after.total_pads <= 1.1 * ideal, (after.total_pads, ideal)
    assert report.bytes_moved > 0 and report.items_moved > 0
    assert progress[-1].done == progress[-1].total and progress[-1].operation == "compact"
    assert sorted(store.keys()) == sorted(items)
    for key, data in items.items():
        assert store.fetch_item(key) == data
    assert store.verify().ok
    # The store goes on as usual: the removed ordinals are reused.
    store.store_item("after", value("after", 300_000))
    assert store.fetch_item("after") == value("after", 300_000)
    assert store.verify().ok


def test_verify_async_and_compact_async_are_the_twins(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store("sim+memory://", pad_size=16384)
    items = _fill_and_thin(store, 200, seed=3)
    seen: list[anthill.OperationProgress] = []

    async def on_progress(event: anthill.OperationProgress) -> None:
        seen.append(event)

    async def run() -> tuple[anthill.VerifyReport, anthill.CompactReport, anthill.VerifyReport]:
        checked = await store.verify_async(callback=on_progress)
        compacted = await store.compact_async(callback=on_progress)
        return checked, compacted, await store.verify_async(deep=False)

    checked, compacted, shallow = asyncio.run(run())
    assert checked.ok and checked.items_checked == len(items) and checked.pads_checked > 0
    assert compacted.pads_released > 0 and compacted.pads_after < compacted.pads_before
    assert shallow.ok and shallow.pads_checked == 0
    operations = [event.operation for event in seen]
    assert operations[0] == "verify" and operations[-1] == "compact"
    assert {"verify", "compact"} == set(operations)
    for key, data in items.items():
        assert store.fetch_item(key) == data


def test_compact_keeps_pads_where_deleting_refunds_nothing(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store(f"sim+memory://k-{uuid.uuid4().hex}?pads_refund=false", pad_size=16384)
    items = _fill_and_thin(store, 300, seed=2)
    before = store.summary()
    empty_before = sum(1 for _, used in store._pad_picture().pads if used == 0)
    report = store.compact()
    stats = store.backend_stats()
    assert stats is not None and stats.pads_deleted == 0 and report.pads_released == 0
    assert report.pads_after == report.pads_before == before.total_pads
    assert report.items_moved > 0
    empty_after = sum(1 for _, used in store._pad_picture().pads if used == 0)
    assert empty_after > empty_before  # the free space gathered into whole pads
    for key, data in items.items():
        assert store.fetch_item(key) == data


def test_compact_survives_reopening_a_folder_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=16384) as store:
        items = _fill_and_thin(store, 200, seed=3)
        report = store.compact()
        assert report.pads_released > 0
    assert len(list((path / "p").iterdir())) <= report.pads_after
    with anthill.open(path, secret=SECRET) as store:
        assert store.summary().total_pads == report.pads_after
        for key, data in items.items():
            assert store.fetch_item(key) == data
        assert store.verify().ok


COMPACTOR = r"""
import sys
import anthill

store = anthill.open(sys.argv[1])
def on_progress(event):
    print("MOVE", event.done, flush=True)
print("START", flush=True)
store.compact(callback=on_progress)
print("END", flush=True)
"""


def _kill_compactions(
    tmp_path: Path, fill: Callable[[anthill.Store, int], dict[str, bytes]]
) -> None:
    """Compacts stores `fill` made in a subprocess SIGKILLed at a random
    move; every item reads back, and a later compaction reaches 1.1x the
    ideal."""
    rng = random.Random(11)
    kills_mid_compaction = 0
    for round_number in range(4):
        path = tmp_path / f"store{round_number}"
        with anthill.open(path, secret=SECRET, pad_size=16384) as store:
            items = fill(store, round_number)
            pads_before = store.summary().total_pads
        compactor = subprocess.Popen(
            [sys.executable, "-c", COMPACTOR, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "ANTHILL_SECRET": SECRET},
        )
        assert compactor.stdout is not None
        last = ""
        for _ in range(rng.randint(2, 40)):
            last = compactor.stdout.readline().strip()
            if not last or last == "END":
                break
        compactor.send_signal(signal.SIGKILL)
        compactor.wait()
        compactor.stdout.close()
        kills_mid_compaction += last.startswith("MOVE")
        with anthill.open(path, secret=SECRET) as store:
            assert sorted(store.keys()) == sorted(items)
            for key, data in items.items():
                assert store.fetch_item(key) == data
            assert store.verify().ok
            assert store.summary().total_pads <= pads_before
            # A later compaction finishes the work.
            store.compact()
            for key, data in items.items():
                assert store.fetch_item(key) == data
            ideal = -(-sum(len(v) for v in items.values()) // 16384)
            assert store.summary().total_pads <= 1.1 * ideal
            assert store.verify().ok
    assert kills_mid_compaction > 0


def test_sigkill_during_compaction_loses_nothing(tmp_path: Path) -> None:
    _kill_compactions(tmp_path, lambda store, seed: _fill_and_thin(store, 200, seed))


def test_sigkill_during_a_compaction_that_cuts_pieces_loses_nothing(tmp_path: Path) -> None:
    """Sizes uniform from 200 B to half a pad: reaching the ideal needs
    pieces cut over free runs (tests_rs/compaction.rs)."""

    def uniform(store: anthill.Store, seed: int) -> dict[str, bytes]:
        rng = random.Random(seed)
        items = {}
        for i in range(300):
            items[f"u{i}"] = value(f"u{seed}-{i}", rng.randint(200, 8192))
            store.store_item(f"u{i}", items[f"u{i}"])
        for i in range(300):
            if i % 5:
                store.remove_item(f"u{i}")
                del items[f"u{i}"]
        return items

    _kill_compactions(tmp_path, uniform)


# --- the picture -----------------------------------------------------------------


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td" and found.get("class") == "anthill-pad":
            self.cells.append(found)


def test_repr_html_draws_one_cell_per_pad(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store("sim+memory://")
    store.store_item("a", value("a", 3 * 4096 + 5))
    store.store_item("b", value("b", 100))
    store.store_item("c", value("c", 2000))
    reads_before = store.backend_stats()
    page = store._repr_html_()
    after = store.backend_stats()
    parser = _Cells()
    parser.feed(page)
    summary = store.summary()
    assert len(parser.cells) == summary.total_pads == 4  # 3 filled by "a", one shared
    titles = [cell["title"] or "" for cell in parser.cells]
    assert sum("(100%)" in t for t in titles) == 3  # the three pads the large item fills
    assert "largest free run" in page and f"{summary.total_pads} pads" in page
    assert reads_before is not None and after is not None
    assert after.get.calls == reads_before.get.calls  # drawn from memory alone
    assert after.list.calls == reads_before.list.calls


def test_repr_html_of_a_closed_store_says_so(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store()
    store.close()
    assert "closed" in store._repr_html_()
