"""Every exception class, raised by a real case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


def test_the_hierarchy() -> None:
    for name in [
        "KeyNotFoundError",
        "KeyExistsError",
        "UploadPendingError",
        "OperationCancelledError",
        "BackendError",
        "IntegrityError",
        "InvalidInputError",
    ]:
        assert issubclass(getattr(anthill, name), anthill.AnthillError)
    assert issubclass(anthill.KeyNotFoundError, KeyError)
    assert issubclass(anthill.InvalidInputError, ValueError)


def test_key_not_found(store: anthill.Store) -> None:
    with pytest.raises(anthill.KeyNotFoundError) as caught:
        store.fetch_item("missing")
    assert caught.value.key == "missing"
    # A sentence, not KeyError's quoted repr.
    assert str(caught.value) == 'key "missing" is not in the store'
    with pytest.raises(KeyError):
        store["missing"]
    with pytest.raises(anthill.KeyNotFoundError):
        store.remove_item("missing")
    with pytest.raises(KeyError):
        del store["missing"]
    assert store.get("missing") is None


def test_key_exists(store: anthill.Store) -> None:
    store.store_item("k", b"1")
    with pytest.raises(anthill.KeyExistsError, match="overwrite=True") as caught:
        store.store_item("k", b"2")
    assert caught.value.key == "k"
    store.store_item("k", b"2", overwrite=True)
    assert store["k"] == b"2"


INTERRUPTED_PUT = r"""
import asyncio, sys
import anthill

store = anthill.open(sys.argv[1], secret="s", pad_size=int(sys.argv[2]))

async def stop_once_pending(event):
    # An async callback suspends the put without blocking it: its pending
    # record goes on being written meanwhile.
    if isinstance(event, anthill.ScratchpadCommitComplete) and event.index == event.total:
        while (await store.summary_async()).pending == 0:
            await asyncio.sleep(0.01)
        print("pending", flush=True)
        await asyncio.Event().wait()  # until killed

async def main():
    await store.store_item_async("k", b"p" * (4 * int(sys.argv[2])), callback=stop_once_pending)

asyncio.run(main())
"""


def test_upload_pending(tmp_path: Path) -> None:
    # A process killed mid-way through a multi-pad put leaves the key pending.
    url = f"sim+file://{tmp_path}/store?latency_ms=5"
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_PUT, url, str(PAD_SIZE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "pending\n", "the child stopped early"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()

    store = anthill.open(url, secret="s", pad_size=PAD_SIZE)
    assert store.summary().pending == 1
    assert "k" not in store
    data = b"p" * (4 * PAD_SIZE)
    with pytest.raises(anthill.UploadPendingError, match="resume=True") as caught:
        store.store_item("k", data)
    assert caught.value.key == "k"
    with pytest.raises(anthill.InvalidInputError, match="same data"):
        store.store_item("k", b"other data", resume=True)
    # Resuming with the same data finishes it, without uploading pads again.
    before = store.backend_stats()
    store.store_item("k", data, resume=True)
    assert store["k"] == data
    assert store.summary().pending == 0
    after = store.backend_stats()
    assert after.put.calls == before.put.calls, "no pad uploaded again"
    # Only the index write, which creates its log object only if absent.
    assert after.reserve.calls - before.reserve.calls == 1


async def test_upload_pending_while_another_call_stores_the_key(
    make_store: Callable[..., anthill.Store],
) -> None:
    import asyncio

    slow = make_store(f"sim+memory://busy-{id(make_store)}?latency_ms=30")
    uploading = asyncio.Event()

    def watch(event: anthill.PutEvent) -> None:
        if isinstance(event, anthill.StartingUpload):
            uploading.set()

    data = b"k" * (3 * PAD_SIZE)
    first = asyncio.ensure_future(slow.store_item_async("k", data, callback=watch))
    await uploading.wait()  # the first put holds the key until it ends
    with pytest.raises(anthill.UploadPendingError, match="right now"):
        await slow.store_item_async("k", b"other", overwrite=True)
    await first
    assert await slow.fetch_item_async("k") == data


def test_operation_cancelled(store: anthill.Store) -> None:
    with pytest.raises(anthill.OperationCancelledError, match="cancelled"):
        store.store_item("k", b"k", callback=lambda e: False)


def test_backend_error_unreachable(make_store: Callable[..., anthill.Store]) -> None:
    # Nothing listens on port 1 of the loopback interface.
    with pytest.raises(anthill.BackendError):
        make_store(
            "s3://bucket/prefix",
            endpoint="http://127.0.0.1:1",
            allow_http=True,
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",
            retry_attempts=1,
            max_retries=0,
        )


def test_backend_error_after_retries(make_store: Callable[..., anthill.Store]) -> None:
    with pytest.raises(anthill.BackendError):
        make_store(f"sim+memory://failing-{id(make_store)}?fail_rate=1&seed=1", retry_attempts=2)


def test_integrity_error_wrong_secret(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=PAD_SIZE) as store:
        store["k"] = b"v"
    with pytest.raises(anthill.IntegrityError, match="secret"):
        anthill.open(path, secret="another secret")


def test_integrity_error_tampered_pad(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with anthill.open(path, secret=SECRET, pad_size=PAD_SIZE) as store:
        store["k"] = b"v" * 1000
    pads = [p for p in (path / "p").rglob("*") if p.is_file()]
    assert pads
    for pad in pads:
        content = bytearray(pad.read_bytes())
        content[len(content) // 2] ^= 0x01
        pad.write_bytes(bytes(content))
    with anthill.open(path, secret=SECRET) as store, pytest.raises(anthill.IntegrityError):
        store["k"]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.store_item("k", "text"),
        lambda s: s.store_item("k", 42),
        lambda s: s.store_item("k", None),
        lambda s: s.store_item("k", [1, 2]),
        lambda s: s.store_item("", b"empty key"),
        lambda s: s.fetch_item("a\0b"),
    ],
    ids=["str", "int", "None", "list", "empty-key", "nul-key"],
)
def test_invalid_input(store: anthill.Store, call: Callable[[anthill.Store], object]) -> None:
    with pytest.raises(anthill.InvalidInputError):
        call(store)
    with pytest.raises(ValueError):
        call(store)


def test_invalid_input_messages(store: anthill.Store) -> None:
    with pytest.raises(anthill.InvalidInputError, match="data must be bytes-like.*got str"):
        store.store_item("k", "text")  # type: ignore[arg-type]
    with pytest.raises(anthill.InvalidInputError, match="pad_size"):
        anthill.open("memory://tiny", pad_size=1)
    with pytest.raises(anthill.InvalidInputError, match="secret"):
        anthill.open("memory://x", secret="")
    with pytest.raises(anthill.InvalidInputError, match="upload_concurrency"):
        anthill.open("memory://x", upload_concurrency=0)
    with pytest.raises(anthill.InvalidInputError, match="scheme"):
        anthill.open("ftp://example/store")


def test_closed_store(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store()
    store["k"] = b"v"
    store.close()
    store.close()  # twice is fine
    with pytest.raises(anthill.InvalidInputError, match="closed"):
        store["k"]
    with pytest.raises(anthill.InvalidInputError, match="closed"):
        store.keys()


def test_exceptions_are_raised_from_any_thread(store: anthill.Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(store.fetch_item, f"missing-{i}") for i in range(8)]
        for future in futures:
            assert isinstance(future.exception(), anthill.KeyNotFoundError)


def test_messages_have_no_rust_noise(store: anthill.Store) -> None:
    with pytest.raises(anthill.InvalidInputError) as caught:
        store.store_item("k", "x")  # type: ignore[arg-type]
    assert "invalid input:" not in str(caught.value)
    assert os.linesep not in str(caught.value)
