"""A store rolled back to an older state is an IntegrityError on open.

This machine remembers, per store, how far it has seen the store's index log
(in ``$XDG_STATE_HOME/anthill/seen-logs``, isolated per test by conftest.py).
A restored older copy of the store's folder, or a store whose newest log
objects were deleted, is behind that and does not open unless
``allow_rollback=True``; processes writing one store in turn never trip it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


def _open(path: Path, **options: object) -> anthill.Store:
    return anthill.open(path, secret=SECRET, pad_size=PAD_SIZE, **options)  # type: ignore[arg-type]


def _seen_logs() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "anthill" / "seen-logs"


def test_a_restored_older_copy_raises_unless_allowed(tmp_path: Path) -> None:
    store_dir, backup = tmp_path / "store", tmp_path / "backup"
    with _open(store_dir) as store:
        store["kept"] = b"old value"
        store["removed later"] = b"x" * 100
    shutil.copytree(store_dir, backup)
    with _open(store_dir) as store:
        store.store_item("kept", b"new value", overwrite=True)
        del store["removed later"]
        for i in range(10):
            store[f"new {i}"] = bytes([i]) * 300
    shutil.rmtree(store_dir)
    shutil.copytree(backup, store_dir)

    with pytest.raises(anthill.IntegrityError, match="rollback") as raised:
        _open(store_dir)
    assert "allow_rollback=True" in str(raised.value)

    with _open(store_dir, allow_rollback=True) as restored:
        assert restored["kept"] == b"old value"
        assert "removed later" in restored
    # Accepted once: the memory now follows the restored store.
    with _open(store_dir) as store:
        assert sorted(store.keys()) == ["kept", "removed later"]


def test_deleting_the_newest_log_objects_raises_unless_allowed(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    with _open(store_dir) as store:
        for i in range(5):
            store[f"k{i}"] = bytes([i]) * 100
        del store["k0"]
    logs = sorted((store_dir / "j").iterdir())
    assert len(logs) >= 2
    for newest in logs[-2:]:
        newest.unlink()

    with pytest.raises(anthill.IntegrityError, match="rollback"):
        _open(store_dir)
    with _open(store_dir, allow_rollback=True) as store:
        assert "k0" in store, "the removal was in the deleted log objects"


def test_the_memory_lives_in_the_state_folder_and_skips_memory_stores(
    tmp_path: Path,
) -> None:
    with _open(tmp_path / "store") as store:
        store["k"] = b"v"
    assert len(list(_seen_logs().glob("*[!k]"))) == 1, list(_seen_logs().iterdir())
    shutil.rmtree(_seen_logs())
    with anthill.open("memory://rollback-test", secret=SECRET) as store:
        store["k"] = b"v"
    assert not _seen_logs().exists()


WRITER = r"""
import sys
import anthill
path, name = sys.argv[1], sys.argv[2]
store = anthill.open(path)
for line in sys.stdin:
    command, _, key = line.strip().partition(" ")
    if command == "put":
        store[key] = key.encode() * 50
    elif command == "reopen":
        store.close()
        store = anthill.open(path)
    print("ok", len(store), flush=True)
"""


def test_two_processes_writing_in_turn_never_trip_it(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    with anthill.open(path, secret=SECRET, pad_size=PAD_SIZE) as store:
        store["first"] = b"1"
    env = {**os.environ, "ANTHILL_SECRET": SECRET}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("a", "b")
    ]
    try:
        for turn in range(40):
            worker = workers[turn % 2]
            assert worker.stdin is not None and worker.stdout is not None
            command = "reopen" if turn % 9 == 8 else f"put {'ab'[turn % 2]}{turn}"
            worker.stdin.write(command + "\n")
            worker.stdin.flush()
            answer = worker.stdout.readline().split()
            assert answer[0] == "ok", answer
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
            assert worker.wait(timeout=60) == 0
    with anthill.open(path, secret=SECRET) as store:
        assert len(store) == 1 + sum(1 for turn in range(40) if turn % 9 != 8)


HOLD_AND_STOP = r"""
import fcntl, os, signal, sys
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("holding", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""

OPEN_AND_PUT = r"""
import sys, anthill
with anthill.open(sys.argv[1]) as store:
    store["b"] = b"2"
    print(sorted(store))
"""


def test_a_process_stopped_holding_the_memory_lock_stops_no_open(tmp_path: Path) -> None:
    """A process stopped (Ctrl-Z) while updating the memory keeps its file
    lock: opens and writes beside it go on, skipping the update."""
    with _open(tmp_path / "store") as store:
        store["a"] = b"1"
    (lock,) = _seen_logs().glob("*.lock")
    stopped = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_STOP, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stopped.stdout is not None and stopped.stdout.readline() == "holding\n"
        done = subprocess.run(
            [sys.executable, "-c", OPEN_AND_PUT, str(tmp_path / "store")],
            env={**os.environ, "ANTHILL_SECRET": SECRET},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['a', 'b']"
    finally:
        stopped.kill()
        stopped.wait()
    with _open(tmp_path / "store") as store:
        assert store["b"] == b"2"
