"""The MutableMapping protocol, keys, closing and the context manager."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from pathlib import Path

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


def test_store_is_a_mutable_mapping(store: anthill.Store) -> None:
    assert isinstance(store, MutableMapping)
    assert len(store) == 0
    assert list(store) == []
    store["b"] = b"2"
    store["a"] = b"1"
    store["a"] = b"one"  # assignment replaces
    assert store["a"] == b"one"
    assert "a" in store and "zzz" not in store
    assert 42 not in store  # not a str: simply absent
    assert len(store) == 2
    assert list(store) == ["a", "b"]
    assert dict(store.items()) == {"a": b"one", "b": b"2"}
    assert store.get("missing", b"default") == b"default"
    del store["b"]
    assert list(store.keys()) == ["a"]
    store.update({"c": b"3", "d": bytearray(b"4")})
    assert store.pop("c") == b"3"
    assert store.setdefault("e", b"5") == b"5"
    assert sorted(store) == ["a", "d", "e"]
    store.clear()
    assert len(store) == 0


def test_keys_are_a_sorted_snapshot(store: anthill.Store) -> None:
    for key in ["zeta", "alpha", "mid/x", "mid/a"]:
        store[key] = key.encode()
    keys = store.keys()
    assert list(keys) == ["alpha", "mid/a", "mid/x", "zeta"]
    assert len(keys) == 4 and "alpha" in keys
    assert keys & {"alpha", "nope"} == {"alpha"}
    assert repr(keys) == "StoreKeys(['alpha', 'mid/a', 'mid/x', 'zeta'])"
    store["later"] = b"x"
    assert "later" not in keys  # a snapshot
    assert store.summary().items == 5


def test_equality_is_identity_and_stores_are_hashable(
    store: anthill.Store, make_store: Callable[..., anthill.Store]
) -> None:
    other = make_store()
    same = store
    assert store == same
    assert store != other  # two empty stores are still different stores
    assert len({store, other}) == 2
    assert repr(store) == f"Store({store.url!r})"


def test_summary(store: anthill.Store) -> None:
    empty = store.summary()
    assert empty == anthill.StorageSummary(
        total_pads=0,
        pad_size=PAD_SIZE,
        total_space=0,
        used_space=0,
        free_space=0,
        items=0,
        pending=0,
    )
    store["k"] = b"k" * 5000
    s = store.summary()
    assert s.total_pads == 2
    assert s.total_space == 2 * PAD_SIZE
    assert s.used_space == 5000
    assert s.free_space == s.total_space - s.used_space
    assert s.items == 1


def test_context_manager_closes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=PAD_SIZE) as store:
        store["k"] = b"kept"
    with pytest.raises(anthill.InvalidInputError, match="closed"):
        len(store)
    # Reopened: the item survived (a local folder store).
    with anthill.open(str(path), secret=SECRET) as again:
        assert again["k"] == b"kept"
        assert again.summary().pad_size == PAD_SIZE


def test_file_urls_and_paths_name_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(f"file://{path}", secret=SECRET, pad_size=PAD_SIZE) as store:
        store["k"] = b"v"
    with anthill.open(path, secret=SECRET) as store:
        assert store["k"] == b"v"


def test_folder_stores_fsync_on_request(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(f"file://{path}?fsync=true", secret=SECRET, pad_size=PAD_SIZE) as store:
        store["k"] = b"v" * (PAD_SIZE + 1)
    with anthill.open(path, secret=SECRET, fsync=True) as store:
        assert store["k"] == b"v" * (PAD_SIZE + 1)
        store["k2"] = b"w"
    with anthill.open(path, secret=SECRET) as store:
        assert sorted(store) == ["k", "k2"]


def test_memory_stores_are_shared_by_name(make_store: Callable[..., anthill.Store]) -> None:
    first = make_store("memory://shared-name-for-test")
    first["k"] = b"v"
    second = make_store("memory://shared-name-for-test")
    assert second["k"] == b"v"


def test_backend_stats(store: anthill.Store, sim_store: anthill.Store) -> None:
    assert store.backend_stats() is None
    sim_store["k"] = b"k" * (2 * PAD_SIZE)
    stats = sim_store.backend_stats()
    assert isinstance(stats, anthill.BackendStats)
    assert stats.pads_reserved == 2
    assert stats.cost == pytest.approx(0.5)
    assert isinstance(stats.put, anthill.OpStats)
    assert stats.put.calls >= 2
    assert stats.reserve.peak_in_flight >= 1
