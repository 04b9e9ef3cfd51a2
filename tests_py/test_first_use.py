"""anthill as a newcomer meets it: read-only commands and opens create nothing,
the command line does not read a terminal by surprise and settles pending
keys, progress output off a terminal is plain, one secret has one form,
copies of a store (pickles) carry its options but never its secrets."""

from __future__ import annotations

import io
import os
import pickle
import pty
import signal
import subprocess
import sys
from pathlib import Path

import anthill
import pytest
from anthill import _config
from conftest import PAD_SIZE, SECRET
from test_cli import run
from test_s3 import fresh_s3_url, join, needs_s3, split

READ_ONLY_COMMANDS = [["ls"], ["ls", "-l"], ["get", "k"], ["stats"], ["verify"], ["rm", "k"]]


def everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


# --- read-only commands and opens create nothing ---------------------------------


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_on_a_missing_store_creates_nothing(
    tmp_path: Path, isolated_user_folders: Path, command: list[str]
) -> None:
    typo = tmp_path / "typo-store"
    before = everything_under(isolated_user_folders)
    result = run(*command, store=typo)
    assert result.returncode == 1
    assert f"no store at {typo}".encode() in result.stderr, result.stderr
    assert not typo.exists()
    assert everything_under(isolated_user_folders) == before


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_without_the_key_file_makes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    store = tmp_path / "store"
    anthill.open(store, secret=SECRET, pad_size=PAD_SIZE).close()
    result = run(*command, store=store)
    assert result.returncode == 1
    key_file = _config.secret_key_path()
    assert f"the key file {key_file} does not exist".encode() in result.stderr, result.stderr
    assert not key_file.exists()


def test_the_default_store_is_made_by_the_first_put_not_by_ls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    default = _config.data_dir() / "default"
    listed = run("ls")  # a fresh machine: neither the key file nor the store exists
    assert listed.returncode == 1 and b"does not exist" in listed.stderr
    assert not default.exists() and not _config.secret_key_path().exists()
    (tmp_path / "note").write_bytes(b"buy milk")
    assert run("put", "note", str(tmp_path / "note"), "--yes").returncode == 0
    assert default.is_dir() and _config.secret_key_path().exists()
    assert run("ls").stdout == b"note\n"


def test_open_with_create_false_opens_only_what_exists(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with pytest.raises(anthill.InvalidInputError, match="no store at .*folder does not exist"):
        anthill.open(folder, secret=SECRET, create=False)
    assert not folder.exists()
    folder.mkdir()  # a folder, but no store in it
    with pytest.raises(anthill.InvalidInputError, match="no store at .*no store metadata"):
        anthill.open(folder, secret=SECRET, create=False)
    assert list(folder.iterdir()) == []
    with pytest.raises(anthill.InvalidInputError, match="no store at"):
        anthill.open("memory://never-made", secret=SECRET, create=False)
    anthill.open(folder, secret=SECRET, pad_size=PAD_SIZE).close()
    with anthill.open(folder, secret=SECRET, create=False) as store:
        assert len(store) == 0


# --- the command line ---------------------------------------------------------------


def test_put_without_a_file_refuses_a_terminal(tmp_path: Path) -> None:
    store = tmp_path / "store"
    anthill.open(store, secret=SECRET, pad_size=PAD_SIZE).close()
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"\x04")  # Ctrl-D: what a user typing nothing sends
        result = subprocess.run(
            [sys.executable, "-m", "anthill", "--store", str(store), "put", "notes.txt"],
            stdin=terminal,
            check=False,
            capture_output=True,
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 1
    assert b"needs a FILE" in result.stderr, result.stderr
    with anthill.open(store, secret=SECRET) as opened:
        assert "notes.txt" not in opened


def leave_pending(store: Path, key: str, source: Path) -> None:
    """A put of ``source`` killed (SIGKILL) once its pending record is written."""
    script = f"""
import asyncio, os, signal, anthill
store = anthill.open({str(store)!r}, secret={SECRET!r})
before = store.summary().pending

async def kill_once_pending(event):
    # An async callback suspends the put without blocking it: its pending
    # record goes on being written meanwhile.
    if isinstance(event, anthill.ScratchpadCommitComplete) and event.index == event.total:
        while (await store.summary_async()).pending == before:
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(store.store_file_async({key!r}, {str(source)!r}, callback=kill_once_pending))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_pending_keys_are_listed_resumed_and_removed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    anthill.open(store, secret=SECRET, pad_size=PAD_SIZE).close()
    source = tmp_path / "big"
    data = os.urandom(5 * PAD_SIZE)
    source.write_bytes(data)
    leave_pending(store, "a", source)
    leave_pending(store, "b", source)

    listed = run("ls", store=store)
    assert listed.returncode == 0
    assert listed.stdout == b"a (pending)\nb (pending)\n"
    assert b"put --resume" in listed.stderr and b"rm KEY" in listed.stderr
    long = run("ls", "-l", store=store)
    assert f"{len(data):>12}  a (pending)".encode() in long.stdout

    refused = run("put", "a", str(source), "--yes", store=store)
    assert refused.returncode == 1 and b"anthill put --resume a FILE" in refused.stderr

    assert run("put", "--resume", "--yes", "a", str(source), store=store).returncode == 0
    assert run("rm", "b", store=store).returncode == 0
    assert run("ls", store=store).stdout == b"a\n"
    with anthill.open(store, secret=SECRET) as opened:
        assert opened.summary().pending == 0
        assert opened["a"] == data


# --- progress off a terminal --------------------------------------------------------


def test_progress_off_a_terminal_writes_plain_lines(sim_store: anthill.Store) -> None:
    out = io.StringIO()  # a log file: no terminal
    sim_store.store_item(
        "k", b"k" * (3 * PAD_SIZE), callback=anthill.Progress(assume_yes=True, file=out)
    )
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines()[1:] == [
        "reserved pads: 3/3",
        "uploaded: 12.0 KiB/12.0 KiB",
        "committed pads: 3/3",
    ]


def test_the_cancellation_message_names_a_callback_that_exists(
    sim_store: anthill.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal
    progress = anthill.Progress(file=io.StringIO())
    with pytest.raises(anthill.OperationCancelledError):
        sim_store.store_item("k", b"k" * 9000, callback=progress)
    assert progress.declined is not None
    hint = "callback=anthill.Progress(assume_yes=True)"
    assert f"pass {hint} to accept" in progress.declined
    callback = eval(hint.partition("=")[2], {"anthill": anthill})
    callback._file = io.StringIO()
    sim_store.store_item("k", b"k" * 9000, callback=callback)
    assert sim_store["k"] == b"k" * 9000


# --- one secret, one form -----------------------------------------------------------


def test_the_key_files_hex_and_its_bytes_open_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHILL_SECRET")
    made_with_file = tmp_path / "a"
    with anthill.open(made_with_file, pad_size=PAD_SIZE) as store:
        store["k"] = b"v"
    hex_key = _config.secret_key_path().read_text().strip()
    for secret in (bytes.fromhex(hex_key), hex_key.upper(), hex_key.encode()):
        with anthill.open(made_with_file, secret=secret) as store:
            assert store["k"] == b"v"
    made_with_bytes = tmp_path / "b"
    with anthill.open(made_with_bytes, secret=bytes.fromhex(hex_key), pad_size=PAD_SIZE) as store:
        store["k"] = b"w"
    with anthill.open(made_with_bytes) as store:  # the key file
        assert store["k"] == b"w"
    with pytest.raises(anthill.IntegrityError, match="wrong secret"):
        anthill.open(made_with_bytes, secret=os.urandom(32))


# --- copies carry every option but the secrets ------------------------------------------


def test_a_pickled_store_reopens_with_its_options_but_no_secret(tmp_path: Path) -> None:
    url = (tmp_path / "store").as_uri()
    with anthill.open(
        url, secret=SECRET, pad_size=PAD_SIZE, max_new_pads=3, retry_attempts=2, fsync=True
    ) as store:
        store["k"] = b"v"
        pickled = pickle.dumps(store)
        assert SECRET.encode() not in pickled
        copy = pickle.loads(pickled)  # the secret from $ANTHILL_SECRET (conftest)
    assert copy["k"] == b"v"
    assert copy._reopen_args() == (
        url,
        {
            "pad_size": PAD_SIZE,
            "max_new_pads": 3,
            "retry_attempts": 2,
            "fsync": True,
            "allow_rollback": False,
            "create": True,
        },
    )
    with pytest.raises(anthill.OperationCancelledError):
        copy.store_item("big", b"x" * (4 * PAD_SIZE))  # max_new_pads travelled
    copy.close()


@needs_s3
def test_an_s3_store_opened_with_keywords_reopens_at_the_same_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, options = split(fresh_s3_url())
    endpoint = options.pop("endpoint")
    credentials = {
        "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
        "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    # Nothing in the environment names the endpoint: only the keyword does.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    store = anthill.open(join(base, options), endpoint=endpoint, **credentials)
    store["k"] = b"v"
    pickled = pickle.dumps(store)
    for secret in (SECRET, *credentials.values()):
        assert secret.encode() not in pickled
    copy = pickle.loads(pickled)  # credentials from the AWS_* variables
    assert copy._reopen_args()[1]["endpoint"] == endpoint
    assert copy["k"] == b"v"
    copy.close()
    store.close()
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem(
        "anthill",
        store=join(base, options),
        endpoint=endpoint,
        secret=SECRET,
        skip_instance_cache=True,
        **credentials,
    )
    pickled = pickle.dumps(fs)
    for secret in (SECRET, *credentials.values()):
        assert secret.encode() not in pickled
    assert pickle.loads(pickled).cat_file("k") == b"v"


def test_an_s3_store_without_credentials_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    with pytest.raises(anthill.BackendError) as raised:
        anthill.open(
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9",
            secret=SECRET,
            retry_attempts=1,
        )
    message = str(raised.value)
    assert "no S3 credentials for s3://bucket/prefix" in message
    assert "AWS_ACCESS_KEY_ID" in message and "access_key_id=" in message
    assert "permission denied" not in message


def test_allow_http_false_with_an_http_endpoint_is_a_configuration_error() -> None:
    with pytest.raises(anthill.InvalidInputError, match="plain http:// but allow_http is false"):
        anthill.open(
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9&allow_http=false",
            secret=SECRET,
            retry_attempts=1,
        )


def test_fsspec_and_zarr_copies_carry_the_options_and_not_the_secret(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    url = (tmp_path / "store").as_uri()
    anthill.open(url, secret=SECRET, pad_size=PAD_SIZE).close()
    fs = fsspec.filesystem(
        "anthill", store=url, secret=SECRET, max_new_pads=1, skip_instance_cache=True
    )
    fs.pipe_file("k", b"v")
    pickled = pickle.dumps(fs)
    assert SECRET.encode() not in pickled
    copy = pickle.loads(pickled)
    assert copy.cat_file("k") == b"v"
    assert copy.store._reopen_args()[1]["max_new_pads"] == 1
    zarr = pytest.importorskip("anthill.zarr")
    items = anthill.open(url, secret=SECRET, max_new_pads=1)
    zstore = zarr.AnthillStore(items, prefix="z")
    zcopy = pickle.loads(pickle.dumps(zstore))
    assert zcopy == zstore and zcopy.store is not items
    assert zcopy.store._reopen_args()[1]["max_new_pads"] == 1
    assert zstore != zarr.AnthillStore(anthill.open(url, secret=SECRET), prefix="z")


def test_copies_unpickled_in_one_process_share_one_handle(tmp_path: Path) -> None:
    """A dask worker unpickles a task's store for every task: the copies
    share one handle (one writer lock), reopened once it is closed."""
    with anthill.open(tmp_path / "store", secret=SECRET, pad_size=PAD_SIZE) as store:
        pickled = pickle.dumps(store)
    first, second = pickle.loads(pickled), pickle.loads(pickled)
    assert first is second
    first["k"] = b"v"
    first.close()
    third = pickle.loads(pickled)
    assert third is not first
    assert third["k"] == b"v"
    third.close()
