"""A pytest plugin (installed with anthill, entry point ``pytest11``) with the
fixture ``anthill_store``: a fresh in-memory store for each test.

    def test_cache_roundtrip(anthill_store):
        anthill_store["answer"] = b"42"
        assert anthill_store["answer"] == b"42"

The store is ``memory://`` (nothing touches the disk or your secret), empty at
the start of the test and closed after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import anthill

TEST_SECRET = b"anthill pytest fixture secret (not secret)"
"""The secret of the fixture's stores (they live in memory only)."""


@pytest.fixture
def anthill_store() -> Iterator[anthill.Store]:
    """A fresh, empty in-memory :class:`anthill.Store`, closed after the test."""
    store = anthill.open(f"memory://pytest-{uuid.uuid4().hex}", secret=TEST_SECRET)
    try:
        yield store
    finally:
        store.close()
