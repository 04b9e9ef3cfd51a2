"""`verify` and `compact` beside a writer in another process: verify holds
no writer lock, and compaction holds it one pass at a time, so the writer's
puts complete while either runs. Counted, not timed: the writer puts when
asked and answers when its puts returned, and the test asks from inside the
operation's progress callback."""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthill
import pytest

SECRET = "beside-writers"
PAD_SIZE = 16384
# Long enough for any machine: reaching it means the writer was shut out.
ANSWER_WAIT_S = 120.0

WRITER = r"""
import sys
import anthill
store = anthill.open(sys.argv[1])  # the secret: $ANTHILL_SECRET
print("ready", flush=True)
done = 0
for line in sys.stdin:
    if line.startswith("put"):
        for _ in range(int(line.split()[1])):
            store.store_item(f"w{done}", f"writer's item {done}".encode() * 20)
            done += 1
        print("done", done, flush=True)
store.close()
"""


def value(key: str, size: int) -> bytes:
    block = hashlib.sha256(key.encode()).digest()
    return (block * (size // 32 + 1))[:size]


class Writer:
    """The writer process: `ask(n)` has it put `n` items; `answer(wait)` is
    its answer (its puts so far) if one came within `wait` seconds."""

    def __init__(self, path: str) -> None:
        env = {**os.environ, "ANTHILL_SECRET": SECRET}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.answer_line(ANSWER_WAIT_S) == "ready"

    def answer_line(self, wait: float) -> str | None:
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], wait)
        return self.process.stdout.readline().strip() if readable else None

    def ask(self, puts: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"put {puts}\n")
        self.process.stdin.flush()

    def answer(self, wait: float) -> int | None:
        line = self.answer_line(wait)
        return None if line is None else int(line.split()[1])

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=ANSWER_WAIT_S) == 0


@pytest.fixture
def thinned(tmp_path: Path) -> Iterator[tuple[anthill.Store, dict[str, bytes], Writer]]:
    """A folder store of 300 items of 2..12 KiB, four in five removed (so a
    compaction runs several passes), and a writer beside it."""
    path = str(tmp_path / "store")
    store = anthill.open(path, secret=SECRET, pad_size=PAD_SIZE)
    kept: dict[str, bytes] = {}
    for i in range(300):
        key = f"k{i}"
        data = value(key, 2048 + (i * 3181) % 10240)
        store.store_item(key, data)
        if i % 5 == 0:
            kept[key] = data
    for i in range(300):
        if i % 5:
            store.remove_item(f"k{i}")
    store.flush()
    writer = Writer(path)
    yield store, kept, writer
    writer.stop()
    store.close()


def reads_back(store: anthill.Store, kept: dict[str, bytes], writer_puts: int) -> None:
    for key, data in kept.items():
        assert store.fetch_item(key) == data, key
    for i in range(writer_puts):
        assert store.fetch_item(f"w{i}") == f"writer's item {i}".encode() * 20


def test_a_writer_puts_while_verify_runs(
    thinned: tuple[anthill.Store, dict[str, bytes], Writer],
) -> None:
    store, kept, writer = thinned
    answers: list[int | None] = []

    def on_progress(event: anthill.OperationProgress) -> None:
        if not answers:  # verify is under way: the writer must get through
            writer.ask(3)
            answers.append(writer.answer(ANSWER_WAIT_S))

    report = store.verify(deep=True, callback=on_progress)
    assert answers == [3]
    assert report.ok and report.items_checked == len(kept) and report.pads_checked > 0
    reads_back(store, kept, 3)


def test_a_writer_puts_while_compact_runs(
    thinned: tuple[anthill.Store, dict[str, bytes], Writer],
) -> None:
    store, kept, writer = thinned
    events_after_answer: list[int] = []
    asked = False

    def on_progress(event: anthill.OperationProgress) -> None:
        nonlocal asked
        if not asked:  # the first pass holds the lock; the writer waits
            writer.ask(3)
            asked = True
        elif not events_after_answer:
            if writer.answer(0) is not None:
                events_after_answer.append(0)
        else:
            events_after_answer[0] += 1

    report = store.compact(callback=on_progress)
    # The writer's puts returned while the compaction went on moving items.
    assert events_after_answer and events_after_answer[0] > 0, report
    assert report.pads_released > 0
    reads_back(store, kept, 3)
    verified = store.verify()
    assert verified.ok, verified
