"""The default store location and where the secret comes from."""

from __future__ import annotations

import concurrent.futures
import os
import stat
import threading
from pathlib import Path

import anthill
import pytest
from anthill import _config
from conftest import PAD_SIZE


def test_secret_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHILL_SECRET", "from-env")
    assert _config.resolve_secret("given") == b"given"
    assert _config.resolve_secret(b"\x00\x01") == b"\x00\x01"
    assert _config.resolve_secret(None) == b"from-env"
    with pytest.raises(anthill.InvalidInputError):
        _config.resolve_secret("")
    with pytest.raises(anthill.InvalidInputError):
        _config.resolve_secret(123)  # type: ignore[arg-type]


def test_key_file_is_created_once_with_owner_only_permissions(
    monkeypatch: pytest.MonkeyPatch, isolated_user_folders: Path
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    path = _config.secret_key_path()
    assert path == isolated_user_folders / ".config" / "anthill" / "secret.key"
    assert not path.exists()
    first = _config.resolve_secret(None)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(first.decode())) == 32
    assert _config.resolve_secret(None) == first  # read back, not replaced
    # A store opened without a secret uses it: the same key reopens it.
    with anthill.open("memory://keyfile-store", pad_size=PAD_SIZE) as store:
        store["k"] = b"v"
    with anthill.open("memory://keyfile-store", secret=first) as store:
        assert store["k"] == b"v"


def test_key_file_readable_by_others_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    path = _config.secret_key_path()
    path.parent.mkdir(parents=True)
    path.write_text("a" * 64)
    os.chmod(path, 0o644)
    with pytest.raises(anthill.InvalidInputError, match="chmod 600"):
        _config.resolve_secret(None)
    os.chmod(path, 0o600)
    assert _config.resolve_secret(None) == b"a" * 64


def test_empty_key_file_is_refused_without_advice_to_delete_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    monkeypatch.setattr(_config, "KEY_FILE_WAIT", 0.2)
    path = _config.secret_key_path()
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(anthill.InvalidInputError, match="empty") as raised:
        _config.resolve_secret(None)
    # Deleting it would lose every store made with the key it should hold.
    assert "delete" not in str(raised.value)


def test_a_key_file_being_written_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty key file is another process's write under way: its key is
    used once written, not refused."""
    monkeypatch.delenv("ANTHILL_SECRET")
    path = _config.secret_key_path()
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    writer = threading.Timer(0.3, lambda: (os.write(fd, b"b" * 64 + b"\n"), os.close(fd)))
    writer.start()
    try:
        assert _config.resolve_secret(None) == b"b" * 64
    finally:
        writer.join()


def test_concurrent_first_uses_agree_on_one_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    barrier = threading.Barrier(8)

    def first_use() -> bytes:
        barrier.wait()
        return _config.resolve_secret(None)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: first_use(), range(8)))
    assert len(set(keys)) == 1
    assert _config.secret_key_path().read_text().strip().encode() == keys[0]
    # No temporary file is left beside it.
    assert os.listdir(_config.secret_key_path().parent) == ["secret.key"]


def test_default_store_is_in_the_data_folder(isolated_user_folders: Path) -> None:
    expected = isolated_user_folders / ".local" / "share" / "anthill" / "default"
    assert _config.default_store_url() == str(expected)
    assert not expected.exists()  # naming it creates nothing; the first open does
    with anthill.open(pad_size=PAD_SIZE) as store:
        store["k"] = b"in the default store"
        assert store.url == str(expected)
    with anthill.open() as store:
        assert store["k"] == b"in the default store"


def test_anthill_store_variable_names_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANTHILL_STORE", "memory://from-the-environment")
    with anthill.open(pad_size=PAD_SIZE) as store:
        assert store.url == "memory://from-the-environment"
    monkeypatch.setenv("ANTHILL_STORE", str(tmp_path / "folder"))
    with anthill.open(pad_size=PAD_SIZE) as store:
        assert store.url == str(tmp_path / "folder")


def test_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert _config.to_url("relative/store") == str(tmp_path / "relative" / "store")
    assert _config.to_url(Path("~/x")) == str(Path.home() / "x")
    assert _config.to_url("memory://name") == "memory://name"
    with pytest.raises(anthill.InvalidInputError):
        _config.to_url("")


def test_backend_options_must_be_simple_values() -> None:
    with pytest.raises(anthill.InvalidInputError, match="backend option"):
        anthill.open("memory://x", endpoint=["not", "a", "string"])  # type: ignore[arg-type]
    with pytest.raises(anthill.InvalidInputError, match="option"):
        anthill.open("memory://x", unknown_option="1")
