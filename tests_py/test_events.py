"""Put and get events as Python sees them: their order, their counters
(monotonic, ending at their total) and their fields."""

from __future__ import annotations

import anthill
import pytest
from anthill import (
    ConfirmReservation,
    DownloadFinished,
    DownloadProgress,
    ReservationProgress,
    ReservingScratchpads,
    ScratchpadCommitComplete,
    ScratchpadUploadComplete,
    StartingDownload,
    StartingUpload,
    StoreComplete,
    UploadFinished,
    UploadProgress,
)
from conftest import PAD_SIZE, Recorder


def check_counters(events: list[object]) -> None:
    """Counters are monotonic and end at their total."""
    for kind, value, total in [
        (ReservationProgress, "current", "total"),
        (UploadProgress, "bytes_written", "total_bytes"),
        (ScratchpadUploadComplete, "index", "total"),
        (ScratchpadCommitComplete, "index", "total"),
        (DownloadProgress, "bytes_read", "total_bytes"),
    ]:
        seen = [e for e in events if isinstance(e, kind)]
        if not seen:
            continue
        values = [getattr(e, value) for e in seen]
        assert values == sorted(values), (kind, values)
        assert values[-1] == getattr(seen[-1], total), (kind, values)
        assert len({getattr(e, total) for e in seen}) == 1


def test_put_with_new_pads_emits_the_full_sequence(
    store: anthill.Store, recorder: Recorder
) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: three 4 KiB pads
    store.store_item("big", data, callback=recorder)
    events = recorder.events
    names = recorder.names()

    assert names[0] == "ConfirmReservation"
    assert names[1] == "ReservingScratchpads"
    assert names[-2:] == ["UploadFinished", "StoreComplete"]
    assert events[0] == ConfirmReservation(
        needed=3,
        data_size=10240,
        total_space=0,
        free_space=0,
        current_scratchpads=0,
        estimated_cost=None,
    )
    assert events[1] == ReservingScratchpads(needed=3)
    assert recorder.of(StartingUpload) == [StartingUpload(total_bytes=10240, total_pads=3)]
    assert [e.current for e in recorder.of(ReservationProgress)] == [1, 2, 3]
    assert [e.index for e in recorder.of(ScratchpadCommitComplete)] == [1, 2, 3]
    assert recorder.of(UploadProgress)[-1] == UploadProgress(bytes_written=10240, total_bytes=10240)
    check_counters(events)
    # Every pad is committed before the upload is finished.
    assert names.index("UploadFinished") > max(
        i for i, n in enumerate(names) if n == "ScratchpadCommitComplete"
    )
    assert names.count("StoreComplete") == 1
    assert store.fetch_item("big") == data


def test_put_into_free_space_asks_nothing(store: anthill.Store) -> None:
    store.store_item("first", b"x" * 1000)
    recorder = Recorder()
    store.store_item("second", b"y" * 1000, callback=recorder)
    names = recorder.names()
    assert "ConfirmReservation" not in names
    assert "ReservingScratchpads" not in names
    assert "ReservationProgress" not in names
    assert names[0] == "StartingUpload"
    assert names[-2:] == ["UploadFinished", "StoreComplete"]
    # Below a pad: committed in the log, its pad written back later.
    assert recorder.events[0] == StartingUpload(total_bytes=1000, total_pads=0)
    check_counters(recorder.events)


def test_confirmation_figures_equal_the_summary_just_before(sim_store: anthill.Store) -> None:
    sim_store.store_item("a", b"a" * 5000)
    sim_store.store_item("b", b"b" * 100)
    before = sim_store.summary()
    needed = sim_store.check_allocation_possible(9000)
    recorder = Recorder()
    sim_store.store_item("c", b"c" * 9000, callback=recorder)
    confirm = recorder.events[0]
    assert isinstance(confirm, ConfirmReservation)
    assert confirm.total_space == before.total_space
    assert confirm.free_space == before.free_space
    assert confirm.current_scratchpads == before.total_pads
    assert confirm.data_size == 9000
    assert confirm.needed == needed
    assert confirm.estimated_cost == f"{0.25 * confirm.needed:.2f}"
    after = sim_store.summary()
    assert after.total_pads == before.total_pads + confirm.needed


def test_check_allocation_possible_matches_the_confirmation(store: anthill.Store) -> None:
    assert store.check_allocation_possible(10) == 1
    store.store_item("k", b"k" * 100)
    assert store.check_allocation_possible(100) is None
    needed = store.check_allocation_possible(3 * PAD_SIZE)
    recorder = Recorder()
    store.store_item("big", b"b" * (3 * PAD_SIZE), callback=recorder)
    assert recorder.events[0].needed == needed


def test_get_events(store: anthill.Store, recorder: Recorder) -> None:
    data = b"z" * 9000
    store.store_item("k", data)
    assert store.fetch_item("k", callback=recorder) == data
    assert recorder.events[0] == StartingDownload(total_bytes=9000)
    assert recorder.events[-1] == DownloadFinished()
    assert recorder.of(DownloadProgress)[-1] == DownloadProgress(bytes_read=9000, total_bytes=9000)
    check_counters(recorder.events)


def test_events_work_with_match_statements(store: anthill.Store) -> None:
    seen: list[str] = []

    def on_event(event: anthill.PutEvent) -> bool | None:
        match event:
            case ConfirmReservation(needed=n, data_size=size, estimated_cost=None):
                seen.append(f"confirm {n} for {size}")
            case ReservationProgress(current, total):  # positional patterns too
                seen.append(f"reserved {current}/{total}")
            case UploadProgress(bytes_written=b, total_bytes=t) if b == t:
                seen.append(f"uploaded {b}")
            case ScratchpadCommitComplete(index=i, total=t):
                seen.append(f"committed {i}/{t}")
            case StoreComplete():
                seen.append("done")
            case (
                UploadFinished()
                | StartingUpload()
                | ReservingScratchpads()
                | ScratchpadUploadComplete()
            ):
                pass
            case UploadProgress():
                pass
            case _:
                pytest.fail(f"unexpected {event!r}")
        return None

    store.store_item("k", b"q" * 5000, callback=on_event)
    assert seen[0] == "confirm 2 for 5000"
    assert "reserved 2/2" in seen
    assert "uploaded 5000" in seen
    assert "committed 2/2" in seen
    assert seen[-1] == "done"


def test_events_are_frozen_readable_and_typed() -> None:
    event = UploadProgress(bytes_written=10, total_bytes=20)
    assert repr(event) == "UploadProgress(bytes_written=10, total_bytes=20)"
    assert isinstance(event, anthill.PutEvent)
    assert isinstance(DownloadFinished(), anthill.GetEvent)
    assert not isinstance(event, anthill.GetEvent)
    assert UploadProgress.__match_args__ == ("bytes_written", "total_bytes")
    assert ConfirmReservation.__match_args__ == (
        "needed",
        "data_size",
        "total_space",
        "free_space",
        "current_scratchpads",
        "estimated_cost",
    )
    try:
        event.bytes_written = 11  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("events must be frozen")
    assert hash(event) == hash(UploadProgress(10, 20))
