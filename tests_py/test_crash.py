"""SIGKILLed writers never damage a local store (bounded run;
the full run is `python tests_py/crash_harness.py --kills 250`), including
kills while small items are written back from the log to their pads, and on
a service whose interrupted overwrites lose the object (the long run:
`python tests_py/crash_harness.py --kills 250 --torn`)."""

import os
import signal
import subprocess
import sys
import time

from crash_harness import run


def test_sigkilled_writers_leave_a_consistent_store():
    report = run(kills=30, seed=2026)
    assert report.failures == []
    assert report.kills == 30
    assert report.kills_mid_operation > 0
    assert report.items_checked > 0
    assert report.kills_mid_flush > 0
    assert report.reopened_unflushed > 0


TORN_WRITER = r"""
import sys, anthill
store = anthill.open(sys.argv[1], secret="torn", pad_size=16384)
store.store_item("late", b"l" * 500)
print("stored", flush=True)
store.flush()  # rewrites the pad that holds the first items
"""


def test_a_writer_killed_while_rewriting_a_pad_loses_nothing_where_overwrites_tear(tmp_path):
    # The failure R9 met on Garage (docs/reliability.md), made certain: a
    # writer dies between the service dropping the pad object it replaces
    # and the new one landing. sim+ with torn_overwrites=true drops it when
    # the put begins; 300 ms of latency hold the window open until the kill.
    import anthill

    folder = tmp_path / "store"
    url = f"sim+file://{folder}?torn_overwrites=true"
    store = anthill.open(url, secret="torn", pad_size=16384)
    first = {f"a{i}": bytes([i]) * 500 for i in range(4)}
    for key, data in first.items():
        store.store_item(key, data)
    store.flush()  # written back: the pad now holds them, at version 1
    store.close()
    before = set(os.listdir(folder / "p"))

    writer = subprocess.Popen(
        [sys.executable, "-c", TORN_WRITER, url + "&latency_ms=300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == "stored\n"
    # Kill once the flush's pad write has torn an object away.
    for _ in range(2000):
        if not before <= set(os.listdir(folder / "p")) or writer.poll() is not None:
            break
        time.sleep(0.005)
    torn = before - set(os.listdir(folder / "p"))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert torn, "the writer rewrote no pad object"

    store = anthill.open(url, secret="torn", pad_size=16384)
    for key, data in first.items():
        assert store.fetch_item(key) == data, key
    assert store.fetch_item("late") == b"l" * 500
    assert store.verify().ok
    store.close()
