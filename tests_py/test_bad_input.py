"""Bad input through the API and the CLI. Each case ends in one
specific anthill exception with a helpful message, and the store unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


@pytest.fixture
def loaded(make_store: Callable[..., anthill.Store]) -> anthill.Store:
    store = make_store()
    store.store_item("kept", b"k" * 5000)
    return store


def snapshot(store: anthill.Store) -> tuple[Any, ...]:
    return (store.summary(), list(store.keys()), store["kept"])


def big(n: int) -> bytes:
    return b"b" * n


async def an_async_callback(event: object) -> None:
    return None


class Odd:
    """A callable object answering something that is not True/False/None."""

    def __call__(self, event: object) -> object:
        return "yes"


# (case, call on the loaded store, exception, words the message must contain)
STORE_CASES: list[tuple[str, Callable[[anthill.Store], object], type[Exception], str]] = [
    ("empty key", lambda s: s.store_item("", b"x"), anthill.InvalidInputError, "empty"),
    ("huge key", lambda s: s.store_item("k" * 5000, b"x"), anthill.InvalidInputError, "limit"),
    ("NUL in key", lambda s: s.store_item("a\0b", b"x"), anthill.InvalidInputError, "NUL"),
    ("int key", lambda s: s.store_item(5, b"x"), anthill.InvalidInputError, "str"),
    ("None key", lambda s: s.store_item(None, b"x"), anthill.InvalidInputError, "str"),
    ("bytes key", lambda s: s.store_item(b"k", b"x"), anthill.InvalidInputError, "str"),
    ("int key get", lambda s: s.fetch_item(7), anthill.InvalidInputError, "str"),
    ("int key remove", lambda s: s.remove_item(7), anthill.InvalidInputError, "str"),
    ("int key []", lambda s: s[7], anthill.InvalidInputError, "str"),
    ("str data", lambda s: s.store_item("k", "text"), anthill.InvalidInputError, "bytes-like"),
    ("int data", lambda s: s.store_item("k", 42), anthill.InvalidInputError, "bytes-like"),
    ("None data", lambda s: s.store_item("k", None), anthill.InvalidInputError, "bytes-like"),
    ("list data", lambda s: s.store_item("k", [1, 2]), anthill.InvalidInputError, "bytes-like"),
    ("dict data", lambda s: s.store_item("k", {}), anthill.InvalidInputError, "bytes-like"),
    ("existing key", lambda s: s.store_item("kept", b"x"), anthill.KeyExistsError, "overwrite"),
    ("missing key get", lambda s: s.fetch_item("nope"), anthill.KeyNotFoundError, "nope"),
    ("missing key remove", lambda s: s.remove_item("nope"), anthill.KeyNotFoundError, "nope"),
    (
        "resume nothing",
        lambda s: s.store_item("k", b"x", resume=True),
        anthill.InvalidInputError,
        "no interrupted",
    ),
    (
        "overwrite not bool",
        lambda s: s.store_item("k", b"x", overwrite="yes"),
        anthill.InvalidInputError,
        "True or False",
    ),
    (
        "negative cap",
        lambda s: s.store_item("k", b"x", max_new_pads=-1),
        anthill.InvalidInputError,
        "max_new_pads",
    ),
    (
        "cap exceeded",
        lambda s: s.store_item("k", big(9 * PAD_SIZE), max_new_pads=1),
        anthill.OperationCancelledError,
        "max_new_pads",
    ),
    ("negative size", lambda s: s.check_allocation_possible(-1), anthill.InvalidInputError, "size"),
    (
        "callback not callable",
        lambda s: s.store_item("k", b"x", callback=5),
        anthill.InvalidInputError,
        "callable",
    ),
    (
        "callback returns 3",
        lambda s: s.store_item("k", b"x", callback=lambda e: 3),
        anthill.InvalidInputError,
        "True, False or None",
    ),
    (
        "callback object returns str",
        lambda s: s.store_item("k", b"x", callback=Odd()),
        anthill.InvalidInputError,
        "True, False or None",
    ),
    (
        "async callback, sync call",
        lambda s: s.store_item("k", b"x", callback=an_async_callback),
        anthill.InvalidInputError,
        "_async",
    ),
    (
        "callback says no",
        lambda s: s.store_item("k", big(3 * PAD_SIZE), callback=lambda e: False),
        anthill.OperationCancelledError,
        "False",
    ),
    (
        "get callback returns 0",
        lambda s: s.fetch_item("kept", callback=lambda e: 0),
        anthill.InvalidInputError,
        "True, False or None",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [case[1:] for case in STORE_CASES],
    ids=[case[0] for case in STORE_CASES],
)
def test_bad_input_to_a_store(
    loaded: anthill.Store,
    call: Callable[[anthill.Store], object],
    error: type[Exception],
    words: str,
) -> None:
    before = snapshot(loaded)
    with pytest.raises(error, match=words):
        call(loaded)
    assert snapshot(loaded) == before


def test_a_callback_raising_propagates_and_changes_nothing(loaded: anthill.Store) -> None:
    mistake = LookupError("mine")

    def raising(event: object) -> None:
        raise mistake

    before = snapshot(loaded)
    with pytest.raises(LookupError) as caught:
        loaded.store_item("k", big(3 * PAD_SIZE), callback=raising)
    assert caught.value is mistake
    assert snapshot(loaded) == before


def test_reentrant_change_from_a_callback_is_refused(loaded: anthill.Store) -> None:
    answers: list[object] = []

    def reentrant(event: object) -> None:
        if isinstance(event, anthill.StartingUpload):
            answers.append(loaded.summary().items)  # reading is fine
            loaded.store_item("inner", b"x")  # changing is not

    before = snapshot(loaded)
    with pytest.raises(anthill.InvalidInputError, match="after the call returns"):
        loaded.store_item("outer", b"y", callback=reentrant)
    assert answers == [1]
    assert snapshot(loaded) == before


def test_zero_length_data_is_an_item(loaded: anthill.Store) -> None:
    loaded.store_item("empty", b"")
    assert loaded.fetch_item("empty") == b""
    assert "empty" in loaded


def test_a_closed_store_refuses_every_call(loaded: anthill.Store) -> None:
    loaded.close()
    for call in (
        lambda: loaded.store_item("k", b"x"),
        lambda: loaded.fetch_item("kept"),
        lambda: loaded.summary(),
        lambda: list(loaded.keys()),
    ):
        with pytest.raises(anthill.InvalidInputError, match="closed"):
            call()


OPEN_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("negative pad size", {"pad_size": -1}, "pad_size"),
    ("zero pad size", {"pad_size": 0}, "pad_size"),
    ("absurd pad size", {"pad_size": 1 << 40}, "pad_size"),
    ("pad size as text", {"pad_size": "4k"}, "pad_size"),
    ("zero reservations", {"reservation_concurrency": 0}, "reservation_concurrency"),
    ("negative uploads", {"upload_concurrency": -3}, "upload_concurrency"),
    ("absurd downloads", {"download_concurrency": 10**9}, "download_concurrency"),
    ("no retries", {"retry_attempts": 0}, "retry_attempts"),
    ("negative cap", {"max_new_pads": -1}, "max_new_pads"),
    ("empty secret", {"secret": ""}, "secret"),
    ("secret of a wrong type", {"secret": 5}, "secret"),
    ("unknown option", {"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(
    ("options", "words"), [c[1:] for c in OPEN_CASES], ids=[c[0] for c in OPEN_CASES]
)
def test_bad_options_to_open(tmp_path: Path, options: dict[str, Any], words: str) -> None:
    options.setdefault("secret", SECRET)
    with pytest.raises(anthill.InvalidInputError, match=words):
        anthill.open(f"memory://bad-options-{tmp_path.name}", **options)


URL_CASES = [
    ("unknown scheme", "ftp://host/x", "scheme"),
    ("sim without a store", "sim+", "malformed"),
    ("memory with options", "memory://x?foo=1", "foo"),
    ("fsync not a boolean", "file:///nonexistent/anthill?fsync=maybe", "fsync"),
    ("folder with an unknown option", "file:///nonexistent/anthill?sync=1", "sync"),
    ("sim failure rate above 1", "sim+memory://x?fail_rate=2", "fail_rate"),
    ("negative latency", "sim+memory://x?latency_ms=-5", "latency_ms"),
    ("unknown sim parameter", "sim+memory://x?speed=9", "speed"),
    ("empty location", "   ", "empty"),
]


@pytest.mark.parametrize(
    ("url", "words"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES]
)
def test_bad_urls(url: str, words: str) -> None:
    with pytest.raises(anthill.InvalidInputError, match=words):
        anthill.open(url, secret=SECRET)


def test_a_file_where_a_store_folder_should_be(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"not a folder")
    with pytest.raises(anthill.InvalidInputError, match="not a folder"):
        anthill.open(str(path), secret=SECRET)


def test_a_wrong_secret_is_an_integrity_error(tmp_path: Path) -> None:
    anthill.open(str(tmp_path / "s"), secret="right").store_item("k", b"v")
    with pytest.raises(anthill.IntegrityError, match="wrong secret"):
        anthill.open(str(tmp_path / "s"), secret="wrong")


def test_a_changed_pad_size_of_an_existing_store(tmp_path: Path) -> None:
    anthill.open(str(tmp_path / "s"), secret=SECRET, pad_size=4096).close()
    with pytest.raises(anthill.InvalidInputError, match="4096-byte pads"):
        anthill.open(str(tmp_path / "s"), secret=SECRET, pad_size=8192)


def key_file(home: Path) -> Path:
    return home / ".config" / "anthill" / "secret.key"


def test_a_world_readable_key_file_is_refused(
    isolated_user_folders: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    anthill.open(str(tmp_path / "s")).close()  # creates the key file
    os.chmod(key_file(isolated_user_folders), 0o644)
    with pytest.raises(anthill.InvalidInputError, match="chmod 600"):
        anthill.open(str(tmp_path / "s"))


def test_an_unreadable_key_file_is_refused(
    isolated_user_folders: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    path = key_file(isolated_user_folders)
    path.parent.mkdir(parents=True)
    path.mkdir(mode=0o700)  # a folder where the key file should be: unreadable as a file
    with pytest.raises(anthill.InvalidInputError, match="key file"):
        anthill.open(str(tmp_path / "s"))


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 512 KiB tmpfs (the tests run as root, as CI does)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_a_backend_error_and_loses_nothing(tiny_disk: Path) -> None:
    path = str(tiny_disk / "store")
    store = anthill.open(path, secret=SECRET, pad_size=64 * 1024, retry_attempts=2)
    stored = {}
    with pytest.raises(anthill.BackendError, match="disk full"):
        for i in range(100):
            data = bytes([i]) * 100_000
            store.store_item(f"k{i}", data)
            stored[f"k{i}"] = data
    assert len(stored) > 0
    store.close()
    reopened = anthill.open(path, secret=SECRET, pad_size=64 * 1024)
    for key, data in stored.items():
        assert reopened.fetch_item(key) == data
    summary = reopened.summary()
    assert summary.used_space == sum(len(d) for d in stored.values()) and summary.pending == 0
    reopened.close()  # gives its lock file back before the disk is unmounted


CLI_CASES = [
    ("get a missing key", ["get", "nope"], 1, "nope"),
    ("rm a missing key", ["rm", "nope"], 1, "nope"),
    ("put a missing file", ["put", "k", "/no/such/file", "--yes"], 1, "/no/such/file"),
    ("put an existing key", ["put", "kept", "-", "--yes"], 1, "--force"),
    ("unknown store scheme", ["--store", "ftp://x", "ls"], 1, "scheme"),
    ("unknown command", ["frobnicate"], 2, "invalid choice"),
    ("put without a key", ["put"], 2, "KEY"),
]


@pytest.mark.parametrize(
    ("args", "status", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_bad_input_to_the_cli(tmp_path: Path, args: list[str], status: int, words: str) -> None:
    url = str(tmp_path / "store")
    anthill.open(url, secret=SECRET, pad_size=PAD_SIZE).store_item("kept", b"k")
    result = subprocess.run(
        [sys.executable, "-m", "anthill", "--store", url, *args],
        input=b"data",
        capture_output=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
        check=False,
    )
    assert result.returncode == status
    assert words in result.stderr.decode()
    assert len(result.stderr.decode().strip().splitlines()) <= 2 or status == 2
    assert anthill.open(url, secret=SECRET).fetch_item("kept") == b"k"
