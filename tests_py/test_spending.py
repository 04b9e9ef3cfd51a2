"""Declining the cost question and capping new pads spend nothing."""

from __future__ import annotations

from collections.abc import Callable

import anthill
import pytest
from anthill import ConfirmReservation
from conftest import PAD_SIZE, Recorder


def test_declining_spends_nothing(sim_store: anthill.Store) -> None:
    sim_store.store_item("a", b"a" * 100)
    before = sim_store.summary()
    reserved_before = sim_store.backend_stats().pads_reserved  # type: ignore[union-attr]
    recorder = Recorder(answer=False)
    with pytest.raises(anthill.OperationCancelledError):
        sim_store.store_item("big", b"b" * (5 * PAD_SIZE), callback=recorder)
    # The question was the only event: nothing was reserved or uploaded.
    assert recorder.names() == ["ConfirmReservation"]
    assert sim_store.summary() == before
    stats = sim_store.backend_stats()
    assert stats is not None
    assert stats.pads_reserved == reserved_before
    assert "big" not in sim_store


def test_declining_on_a_new_store_reserves_no_pad(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store("sim+memory://", pad_size=PAD_SIZE)
    store = make_store(f"sim+memory://decline-{id(store)}?pad_price=1")
    opened = store.backend_stats()
    assert opened is not None
    with pytest.raises(anthill.OperationCancelledError):
        store.store_item("k", b"k" * 10, callback=lambda e: not isinstance(e, ConfirmReservation))
    stats = store.backend_stats()
    assert stats is not None
    assert stats.pads_reserved == 0
    # Creating the store made its metadata (only if absent): no pad.
    assert stats.reserve.calls == opened.reserve.calls
    assert stats.cost == 0
    assert store.summary().total_pads == 0


def test_max_new_pads_per_put_spends_nothing(sim_store: anthill.Store) -> None:
    before = sim_store.summary()
    recorder = Recorder()
    with pytest.raises(anthill.OperationCancelledError, match="max_new_pads"):
        sim_store.store_item("big", b"b" * (3 * PAD_SIZE), callback=recorder, max_new_pads=2)
    assert recorder.events == []  # refused before asking
    assert sim_store.summary() == before
    assert sim_store.backend_stats().pads_reserved == 0  # type: ignore[union-attr]
    # Within the cap it goes through.
    sim_store.store_item("big", b"b" * (3 * PAD_SIZE), max_new_pads=3)
    assert sim_store.backend_stats().pads_reserved == 3  # type: ignore[union-attr]


def test_max_new_pads_of_the_store_applies_to_every_put(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store(f"sim+memory://capped-{id(make_store)}", max_new_pads=1)
    store.store_item("small", b"s" * 100)  # one pad: allowed
    with pytest.raises(anthill.OperationCancelledError):
        store.store_item("big", b"b" * (2 * PAD_SIZE))
    with pytest.raises(anthill.OperationCancelledError):
        store["big"] = b"b" * (2 * PAD_SIZE)
    assert store.backend_stats().pads_reserved == 1  # type: ignore[union-attr]
    # A put may raise its own cap above the store's.
    store.store_item("big", b"b" * (2 * PAD_SIZE), max_new_pads=5)
    assert store["big"] == b"b" * (2 * PAD_SIZE)


def test_freed_space_is_reused_before_new_pads(sim_store: anthill.Store) -> None:
    sim_store.store_item("a", b"a" * (2 * PAD_SIZE))
    pads = sim_store.summary().total_pads
    sim_store.remove_item("a")
    recorder = Recorder()
    sim_store.store_item("b", b"b" * (2 * PAD_SIZE), callback=recorder)
    assert "ConfirmReservation" not in recorder.names()
    assert sim_store.summary().total_pads == pads
