"""anthill.progress: bars and the cost question."""

from __future__ import annotations

import io
from collections.abc import Callable

import anthill
import pytest
from anthill import ConfirmReservation, Progress
from anthill._progress import describe_reservation, format_bytes
from conftest import PAD_SIZE


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_bytes() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(4 << 20) == "4.0 MiB"


def test_the_question_shows_size_storage_free_pads_and_cost() -> None:
    event = ConfirmReservation(
        needed=3,
        data_size=12 << 20,
        total_space=4 << 20,
        free_space=512 << 10,
        current_scratchpads=1,
        estimated_cost="0.03",
    )
    assert describe_reservation(event) == (
        "Store 12.0 MiB? Storage: 3.5 MiB used of 4.0 MiB, 512.0 KiB free, "
        "1 pad (+3 needed), cost 0.03"
    )
    no_price = ConfirmReservation(3, 10, 0, 0, 0, None)
    assert "cost" not in describe_reservation(no_price)


def test_progress_is_exported() -> None:
    assert isinstance(anthill.progress, Progress)
    assert anthill.progress.assume_yes is False


def test_declines_without_a_terminal(
    sim_store: anthill.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal
    out = io.StringIO()
    progress = Progress(file=out)
    with pytest.raises(anthill.OperationCancelledError):
        sim_store.store_item("k", b"k" * 9000, callback=progress)
    assert "no terminal" in out.getvalue()
    assert progress.declined is not None and "assume_yes=True" in progress.declined
    assert sim_store.backend_stats().pads_reserved == 0  # type: ignore[union-attr]


def test_assume_yes_shows_the_question_and_draws_the_bars(sim_store: anthill.Store) -> None:
    out = io.StringIO()
    progress = Progress(assume_yes=True, file=out)
    sim_store.store_item("k", b"k" * (3 * PAD_SIZE), callback=progress)
    text = out.getvalue()
    assert "Store 12.0 KiB?" in text and "(+3 needed)" in text and "cost 0.75" in text
    assert "yes (assumed)" in text
    for label in ("reserved pads", "uploaded", "committed pads"):
        assert label in text
    assert "3/3" in text
    assert progress._bars == {}  # closed at StoreComplete
    sim_store.fetch_item("k", callback=progress)
    assert "downloaded" in out.getvalue()
    assert progress._bars == {}


@pytest.mark.parametrize(
    "answer, stored", [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False), ("", False)]
)
def test_asks_on_a_terminal(
    make_store: Callable[..., anthill.Store],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    stored: bool,
) -> None:
    store = make_store()
    monkeypatch.setattr("sys.stdin", FakeTerminal(answer))
    out = io.StringIO()
    progress = Progress(file=out)
    if stored:
        store.store_item("k", b"k" * 5000, callback=progress)
        assert store["k"] == b"k" * 5000
    else:
        with pytest.raises(anthill.OperationCancelledError):
            store.store_item("k", b"k" * 5000, callback=progress)
        assert progress.declined == "declined"
    assert "[y/N]" in out.getvalue()


def test_resets_for_each_operation_and_closes_bars_on_error(store: anthill.Store) -> None:
    out = io.StringIO()
    progress = Progress(assume_yes=True, file=out)
    store.store_item("a", b"a" * 5000, callback=progress)

    def failing(event: object) -> None:
        progress(event)  # type: ignore[arg-type]
        if isinstance(event, anthill.UploadProgress):
            error = RuntimeError("stop")
            raise error

    with pytest.raises(RuntimeError):
        store.store_item("b", b"b" * 9000, callback=failing)
    # The bars of the failed put stay open until the next operation...
    assert progress._bars
    store.store_item("c", b"c" * 100, callback=progress)
    assert progress._bars == {}


def test_store_closes_bars_when_an_operation_fails(store: anthill.Store) -> None:
    out = io.StringIO()
    progress = Progress(assume_yes=True, file=out)
    store.store_item("a", b"a" * 100, callback=progress)
    with pytest.raises(anthill.KeyExistsError):
        store.store_item("a", b"a", callback=progress)
    assert progress._bars == {}


async def test_progress_works_with_the_async_api(store: anthill.Store) -> None:
    out = io.StringIO()
    progress = Progress(assume_yes=True, file=out)
    await store.store_item_async("k", b"k" * 9000, callback=progress)
    assert await store.fetch_item_async("k", callback=progress) == b"k" * 9000
    assert "committed pads" in out.getvalue()
