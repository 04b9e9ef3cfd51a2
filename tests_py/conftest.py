"""Fixtures of the Python tests: isolated user folders, stores, event recorders."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthill
import pytest

SECRET = "tests-secret"
PAD_SIZE = 4096


@pytest.fixture(autouse=True)
def isolated_user_folders(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Never touch the real user's config or data folder, secret or default store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("ANTHILL_SECRET", SECRET)
    monkeypatch.delenv("ANTHILL_STORE", raising=False)
    return home


@pytest.fixture
def make_store() -> Iterator[Callable[..., anthill.Store]]:
    """``make_store(url=None, **options)``: a store (default: a fresh memory
    store with 4 KiB pads), closed after the test."""
    stores: list[anthill.Store] = []

    def make(url: str | None = None, **options: Any) -> anthill.Store:
        options.setdefault("secret", SECRET)
        if url is None or url.endswith("://"):
            url = f"{url or 'memory://'}test-{uuid.uuid4().hex}"
        if "://" in url and "pad_size" not in options:
            options["pad_size"] = PAD_SIZE
        store = anthill.open(url, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., anthill.Store]) -> anthill.Store:
    """A fresh memory store with 4 KiB pads."""
    return make_store()


@pytest.fixture
def sim_store(make_store: Callable[..., anthill.Store]) -> anthill.Store:
    """A fresh simulated store (memory behind it) charging 0.25 per new pad."""
    return make_store(f"sim+memory://test-{uuid.uuid4().hex}?pad_price=0.25")


def settle_interrupted(store: anthill.Store, key: str) -> None:
    """After a put was interrupted: the key must be absent, or pending
    (resumable: an interrupted put never leaves it half-present); a pending
    upload is discarded here."""
    assert key not in store
    if store.summary().pending:
        store.remove_item(key)
    summary = store.summary()
    assert summary.pending == 0
    assert key not in list(store.keys())


class Recorder:
    """A callback that records every event and answers ``answer``."""

    def __init__(self, answer: bool | None = None) -> None:
        self.events: list[Any] = []
        self.answer = answer

    def __call__(self, event: Any) -> bool | None:
        self.events.append(event)
        return self.answer

    def names(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
