"""End to end over S3 (a Garage cluster from ``scripts/garage.sh start``), and the
same put/get/remove/summary/reopen scenario over memory and a local folder.

The S3 cases need ``ANTHILL_TEST_S3_URL`` and the ``AWS_*`` credentials that
``eval "$(scripts/garage.sh start 3)"`` exports; CI always sets them, and
without them the S3 cases are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anthill
import pytest
from anthill import (
    DownloadFinished,
    ScratchpadCommitComplete,
    StartingDownload,
    StartingUpload,
    StoreComplete,
)

S3_URL = os.environ.get("ANTHILL_TEST_S3_URL", "")
needs_s3 = pytest.mark.skipif(
    not S3_URL,
    reason='ANTHILL_TEST_S3_URL is unset: run `eval "$(scripts/garage.sh start 3)"` first '
    "(CI always does)",
)
PAD = 64 * 1024
SECRET = "s3 tests secret"


def split(url: str) -> tuple[str, dict[str, str]]:
    """``s3://bucket/prefix`` and its query options."""
    base, _, query = url.partition("?")
    return base.rstrip("/"), dict(parse_qsl(query))


def join(base: str, options: dict[str, str]) -> str:
    return f"{base}?{urlencode(options, safe=':/')}" if options else base


def fresh_s3_url() -> str:
    base, options = split(S3_URL)
    return join(f"{base}/py-{uuid.uuid4().hex}", options)


def data(size: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


class Events:
    """A callback recording every event (and confirming reservations)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> bool:
        self.events.append(event)
        return True

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture(params=["memory", "file", pytest.param("s3", marks=needs_s3)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each backend kind."""
    if request.param == "memory":
        return f"memory://s3-suite-{uuid.uuid4().hex}"
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    return fresh_s3_url()


@pytest.fixture
def s3_url() -> Iterator[str]:
    if not S3_URL:
        pytest.skip("ANTHILL_TEST_S3_URL is unset (CI always sets it)")
    yield fresh_s3_url()


def test_put_get_remove_summary_reopen(store_url: str) -> None:
    big = data(3 * PAD + PAD // 2, 1)
    small = data(1000, 2)
    with anthill.open(store_url, secret=SECRET, pad_size=PAD) as store:
        events = Events()
        store.store_item("big", big, callback=events)
        assert len(events.of(StartingUpload)) == 1
        commits = events.of(ScratchpadCommitComplete)
        assert len(commits) == 4
        assert sorted(c.index for c in commits) == [1, 2, 3, 4]
        assert isinstance(events.events[-1], StoreComplete)

        store.store_item("small", small)
        downloads = Events()
        assert store.fetch_item("big", callback=downloads) == big
        assert downloads.of(StartingDownload)[0].total_bytes == len(big)
        assert isinstance(downloads.events[-1], DownloadFinished)
        assert store["small"] == small

        summary = store.summary()
        assert summary.items == 2
        assert summary.pad_size == PAD
        assert summary.total_pads >= 4

        store.remove_item("small")
        assert "small" not in store
        with pytest.raises(anthill.KeyNotFoundError):
            store.fetch_item("small")

    with anthill.open(store_url, secret=SECRET) as again:
        assert list(again.keys()) == ["big"]
        assert again.fetch_item("big") == big
        assert again.summary().pad_size == PAD
        # The freed space is reused: a small item needs no new pad.
        assert again.check_allocation_possible(len(small)) is None


def test_async_twins(store_url: str) -> None:
    async def scenario() -> None:
        with anthill.open(store_url, secret=SECRET, pad_size=PAD) as store:
            items = {f"k{i}": data(PAD // 2 + i * 5000, i) for i in range(6)}
            await asyncio.gather(
                *(store.store_item_async(key, value) for key, value in items.items())
            )
            fetched = await asyncio.gather(*(store.fetch_item_async(key) for key in items))
            assert fetched == list(items.values())
            assert (await store.summary_async()).items == 6

    asyncio.run(scenario())


@needs_s3
def test_backend_options_as_keywords(s3_url: str) -> None:
    """Endpoint, region and credentials as ``anthill.open`` keywords, no query."""
    base, options = split(s3_url)
    keywords: dict[str, Any] = {
        "endpoint": options["endpoint"],
        "region": options.get("region", "garage"),
        "allow_http": True,
    }
    if "AWS_ACCESS_KEY_ID" in os.environ:
        keywords["access_key_id"] = os.environ["AWS_ACCESS_KEY_ID"]
        keywords["secret_access_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
    with anthill.open(base, secret=SECRET, pad_size=PAD, **keywords) as store:
        store["k"] = b"v" * 100
    with anthill.open(s3_url, secret=SECRET) as store:
        assert store["k"] == b"v" * 100


@needs_s3
def test_wrong_credentials_raise_backend_error(s3_url: str) -> None:
    with pytest.raises(anthill.BackendError, match="wrong credentials"):
        anthill.open(
            s3_url,
            secret=SECRET,
            pad_size=PAD,
            retry_attempts=2,
            access_key_id="GK0123456789abcdef01234567",
            secret_access_key="not-the-secret",
        )


@needs_s3
def test_missing_bucket_raises_backend_error_naming_it() -> None:
    _, options = split(S3_URL)
    bucket = f"anthill-missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(anthill.BackendError, match=f"bucket {bucket} does not exist"):
        anthill.open(join(f"s3://{bucket}/x", options), secret=SECRET, retry_attempts=2)


@needs_s3
def test_stopped_endpoint_raises_backend_error(s3_url: str) -> None:
    base, options = split(s3_url)
    options["endpoint"] = "http://127.0.0.1:1"
    with pytest.raises(anthill.BackendError, match="cannot reach"):
        anthill.open(join(base, options), secret=SECRET, retry_attempts=2)


@needs_s3
def test_two_handles_share_one_s3_store(s3_url: str) -> None:
    """Two handles (as two processes) write one store in turn under the lease."""
    with (
        anthill.open(s3_url, secret=SECRET, pad_size=PAD) as first,
        anthill.open(s3_url, secret=SECRET, pad_size=PAD) as second,
    ):
        first["a"] = data(2 * PAD, 3)
        second["b"] = data(2 * PAD, 4)
        first["c"] = data(10, 5)
        assert sorted(second.keys()) == ["a", "b", "c"]
        assert second["a"] == data(2 * PAD, 3)
        assert first["b"] == data(2 * PAD, 4)


def test_refresh_shows_what_another_handle_committed(store_url: str) -> None:
    """``refresh()`` brings a handle up to date with another's overwrites and
    removes; on a folder and in memory every read is up to date already (on
    S3 a read may lag up to a second, so there only after ``refresh``)."""
    with (
        anthill.open(store_url, secret=SECRET, pad_size=PAD) as writer,
        anthill.open(store_url, secret=SECRET, pad_size=PAD) as reader,
    ):
        local = not store_url.startswith("s3://")
        for round, size in enumerate([10, 3 * PAD // 2, 100]):
            writer.store_item("k", data(size, round), overwrite=True)
            if local:
                assert reader.fetch_item("k") == data(size, round)
            reader.refresh()
            assert reader.fetch_item("k") == data(size, round)
        writer.remove_item("k")
        asyncio.run(_refresh_async(reader))
        with pytest.raises(anthill.KeyNotFoundError):
            reader.fetch_item("k")


async def _refresh_async(store: anthill.Store) -> None:
    await store.refresh_async()


# A writer paused past its lease (a closed laptop lid, SIGSTOP, a long GC
# pause) must not write over what the next holder of the lease wrote. The
# writer stores one item over every free pad through a slow backend, one pad
# upload at a time, and reports when its upload starts; it is stopped there.
PAUSED_WRITER = r"""
import sys
import anthill
from anthill import StartingUpload

url, secret, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

def report(event):
    if isinstance(event, StartingUpload):
        print("uploading", flush=True)

store = anthill.open(url, secret=secret, upload_concurrency=1, retry_attempts=2)
try:
    store.store_item("paused", bytes(range(256)) * (size // 256), callback=report)
except anthill.BackendError as error:
    print("BackendError:", error, flush=True)
    sys.exit(3)
print("stored", flush=True)
"""


@needs_s3
def test_a_writer_paused_past_its_lease_writes_nothing_after(s3_url: str) -> None:
    """Its pad uploads are refused once the lease may have passed to another
    writer, which then filled the same pads: every item of that writer reads
    back intact."""
    pads = 8
    lease = {"lease_ttl_secs": "2"}
    base, options = split(s3_url)
    url = join(base, {**options, **lease})
    # Free space of `pads` whole pads and no more, so both writers use it.
    with anthill.open(url, secret=SECRET, pad_size=PAD) as store:
        store.store_item("filler", data(pads * PAD, 9))
        store.remove_item("filler")
        assert store.summary().free_space == pads * PAD

    # Each pad write of the paused writer waits 500 ms first: it is stopped
    # while its first ones wait, before any of them (or its pending record)
    # reaches the service.
    slow = "sim+" + join(base, {**options, **lease, "latency_ms": "500"})
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_WRITER, slow, SECRET, str(pads * PAD)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        assert line == "uploading\n", (line, writer.stderr and writer.stderr.read())
        writer.send_signal(signal.SIGSTOP)

        # This process waits for the stopped writer's lease to expire, takes
        # it, and fills the same pads.
        items = {f"b{i}": data(PAD, 20 + i) for i in range(pads)}
        with anthill.open(url, secret=SECRET) as store:
            for key, value in items.items():
                store.store_item(key, value)
            assert store.summary().total_pads == pads
    finally:
        writer.send_signal(signal.SIGCONT)
    out, err = writer.communicate(timeout=60)

    with anthill.open(url, secret=SECRET) as store:
        assert sorted(store.keys()) == sorted(items)
        for key, value in items.items():
            assert store.fetch_item(key) == value, key
        assert store.summary().pending == 0
    assert writer.returncode == 3, (writer.returncode, out, err)
    assert "lost the writer lease" in out, out


def garage_requests(s3_url: str) -> dict[str, int]:
    """S3 requests the Garage node behind ``s3_url`` has served, by operation
    (its admin API listens 3 ports above its S3 API, see scripts/garage.sh)."""
    host, port = split(s3_url)[1]["endpoint"].rsplit(":", 1)
    with urllib.request.urlopen(f"{host}:{int(port) + 3}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = r'^api_s3_request_counter\{api_endpoint="(\w+)"\} (\d+)'
    return {name: int(count) for name, count in re.findall(pattern, text, re.MULTILINE)}


@needs_s3
def test_a_small_put_sends_one_head_and_one_put(s3_url: str) -> None:
    """In a loop of small puts the writer keeps its lease, and each put sends
    its log object alone: a ``HEAD`` (is the name free? Garage ignores
    conditional writes) and the ``PUT``; no read of the lease, no read-back.
    Counted by the sim wrapper (anthill's object calls) and by Garage itself
    (every request it served, the lease's included)."""
    puts = 20
    base, options = split(s3_url)
    # A lease renewal (every third of its lifetime) would add a GET and a PUT.
    url = "sim+" + join(base, {**options, "lease_ttl_secs": "120"})
    with anthill.open(url, secret=SECRET, pad_size=PAD) as store:
        store["first"] = b"takes the lease and reserves a pad"
        sim_before = store.backend_stats()
        garage_before = garage_requests(s3_url)
        for i in range(puts):
            store[f"k{i}"] = data(1024, i)
        garage_after = garage_requests(s3_url)
        sim_after = store.backend_stats()
        assert sim_before is not None and sim_after is not None
        calls = {
            kind: getattr(sim_after, kind).calls - getattr(sim_before, kind).calls
            for kind in ("reserve", "put", "durable_put", "verify", "get", "list", "delete")
        }
        assert calls == {
            "reserve": puts,
            "put": 0,
            "durable_put": 0,
            "verify": 0,
            "get": 0,
            "list": 0,
            "delete": 0,
        }
        sent = {
            name: count - garage_before.get(name, 0)
            for name, count in garage_after.items()
            if count != garage_before.get(name, 0)
        }
        assert sent == {"HeadObject": puts, "PutObject": puts}
    with anthill.open(s3_url, secret=SECRET) as again:
        assert all(again[f"k{i}"] == data(1024, i) for i in range(puts))


# A writer of small items paused past its lease. Each of its backend calls
# waits 300 ms first. It stores two items, says "idle" and waits for a line on
# stdin, then stores a third, saying "uploading" once that put is under way
# (inside the writer lock, its log write not yet sent).
PAUSED_SMALL_WRITER = r"""
import sys
import anthill
from anthill import StartingUpload

url, secret = sys.argv[1], sys.argv[2]
store = anthill.open(url, secret=secret, retry_attempts=2)

def report(event):
    if isinstance(event, StartingUpload):
        print("uploading", flush=True)

for i in range(3):
    if i == 2:
        print("idle", flush=True)
        sys.stdin.readline()
    try:
        store.store_item(f"a{i}", b"a" * 1000, callback=report)
    except anthill.BackendError as error:
        print("BackendError:", error, flush=True)
        sys.exit(3)
    print("stored", i, flush=True)
"""


def _pause_small_writer_then_take_over(
    s3_url: str, stop_at: str
) -> tuple[dict[str, bytes], tuple[str, str, int, str]]:
    """Runs PAUSED_SMALL_WRITER on a store with a 2 s lease, stops it when it
    says `stop_at` (its third put under way, or idle before it), lets this
    process take the expired lease and store five items, then resumes it.
    Returns those items and what the writer printed; the writer has exited."""
    base, options = split(s3_url)
    lease = {"lease_ttl_secs": "2"}
    url = join(base, {**options, **lease})
    with anthill.open(url, secret=SECRET, pad_size=PAD) as store:
        store["before"] = b"b" * 100

    slow = "sim+" + join(base, {**options, **lease, "latency_ms": "300"})
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_SMALL_WRITER, slow, SECRET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    said = ["uploading\n", "stored 0\n", "uploading\n", "stored 1\n", "idle\n"]
    if stop_at == "uploading":
        said.append("uploading\n")
    seen = []
    items = {f"b{i}": data(1000, 40 + i) for i in range(5)}
    try:
        for expected in said:
            if expected == "uploading\n" and seen[-1:] == ["idle\n"]:
                writer.stdin.write("go\n")
                writer.stdin.flush()
            seen.append(writer.stdout.readline())
            assert seen[-1] == expected, (seen, writer.stderr and writer.stderr.read())
        writer.send_signal(signal.SIGSTOP)

        # This process waits for the stopped writer's lease to expire, takes
        # it and appends to the log where the stopped writer would.
        with anthill.open(url, secret=SECRET) as store:
            for key, value in items.items():
                store.store_item(key, value)
    finally:
        writer.send_signal(signal.SIGCONT)
    out, err = writer.communicate("go\n" if stop_at == "idle" else "", timeout=120)
    return items, ("".join(seen) + out, err, writer.returncode, url)


@needs_s3
def test_a_small_writer_paused_in_a_put_past_its_lease_is_refused_after_a_takeover(
    s3_url: str,
) -> None:
    """Another process takes the expired lease and appends to the log; the
    paused put, resumed, fails with BackendError instead of writing its log
    object over the new holder's: every item reported stored reads back,
    and nothing else is there."""
    items, (out, err, code, url) = _pause_small_writer_then_take_over(s3_url, "uploading")
    # Refused by the fence (the lease's deadline has passed), whichever
    # check saw it first: the lease's before the log write, or the
    # backend's, after which the writer finds another's log object there.
    assert code == 3, (code, out, err)
    assert "BackendError" in out, out

    with anthill.open(url, secret=SECRET) as store:
        assert sorted(store.keys()) == sorted(["before", "a0", "a1", *items])
        for key, value in items.items():
            assert store.fetch_item(key) == value, key
        for key in ("a0", "a1"):
            assert store.fetch_item(key) == b"a" * 1000, key
        assert store.verify().ok


@needs_s3
def test_a_small_writer_paused_idle_past_its_lease_takes_it_anew_for_its_next_put(
    s3_url: str,
) -> None:
    """Paused between puts, with its lease lingering after the last one: the
    next put, once resumed, waits for the lease, catches up with what the
    other writer stored meanwhile and stores its item, losing none."""
    items, (out, err, code, url) = _pause_small_writer_then_take_over(s3_url, "idle")
    assert code == 0, (code, out, err)
    assert out.endswith("stored 2\n"), out

    with anthill.open(url, secret=SECRET) as store:
        assert sorted(store.keys()) == sorted(["before", "a0", "a1", "a2", *items])
        for key, value in items.items():
            assert store.fetch_item(key) == value, key
        for key in ("a0", "a1", "a2"):
            assert store.fetch_item(key) == b"a" * 1000, key
        assert store.verify().ok


@needs_s3
def test_a_large_put_sends_one_put_per_pad(s3_url: str) -> None:
    """Pads are created by their first write: no empty object first (and on
    Garage no ``HEAD`` before it), and the answered ``PUT`` is the pad's
    commit, with no ``HEAD`` after it (the lease fences the writer), so each
    pad costs its upload alone; a few more requests are the index log's
    (on Garage a ``HEAD`` before each, checking its number is free)."""
    pads = 8
    base, options = split(s3_url)
    url = join(base, {**options, "lease_ttl_secs": "120"})
    with anthill.open(url, secret=SECRET, pad_size=PAD) as store:
        store["first"] = b"takes the lease"
        before = garage_requests(s3_url)
        store["large"] = data(pads * PAD - 1000, 7)
        after = garage_requests(s3_url)
        sent = {
            name: count - before.get(name, 0)
            for name, count in after.items()
            if count != before.get(name, 0)
        }
        assert set(sent) <= {"PutObject", "HeadObject"}, sent
        # Each pad's upload; at most 3 log writes besides.
        assert pads <= sent["PutObject"] <= pads + 3, sent
        assert sent.get("HeadObject", 0) <= 3, sent
    with anthill.open(s3_url, secret=SECRET) as again:
        assert again["large"] == data(pads * PAD - 1000, 7)
        assert again.verify().ok


@needs_s3
def test_verify_and_compact_on_s3_release_pads(s3_url: str) -> None:
    """On S3 (Garage): a thinned store verifies, compacts (its emptied pads
    deleted through the fenced delete, counted by the sim wrapper), and every
    item reads back; then verifies again, deep, from a fresh handle."""
    base, options = split(s3_url)
    url = "sim+" + join(base, options)
    pad = 16 * 1024
    kept: dict[str, bytes] = {}
    with anthill.open(url, secret=SECRET, pad_size=pad) as store:
        for i in range(120):
            kept[f"k{i}"] = data(300 + (i * 977) % (pad // 2), i)
            store.store_item(f"k{i}", kept[f"k{i}"])
        for i in range(120):
            if i % 5:
                store.remove_item(f"k{i}")
                del kept[f"k{i}"]
        checked = store.verify(deep=True)
        assert checked.ok and checked.items_checked == len(kept) and checked.pads_checked > 0
        report = store.compact()
        stats = store.backend_stats()
        assert stats is not None
        assert report.pads_released > 0 and stats.pads_deleted == report.pads_released
        assert report.pads_after == report.pads_before - report.pads_released
        ideal = -(-sum(len(v) for v in kept.values()) // pad)
        assert report.pads_after <= 1.1 * ideal, (report, ideal)
        for key, value in kept.items():
            assert store.fetch_item(key) == value
    with anthill.open(url, secret=SECRET) as store:
        assert sorted(store.keys()) == sorted(kept)
        assert store.summary().total_pads == report.pads_after
        again = store.verify(deep=True)
        assert again.ok and again.items_checked == len(kept)
