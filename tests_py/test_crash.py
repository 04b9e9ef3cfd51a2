"""SIGKILLed writers never damage a local store (bounded run;
the full run is `python tests_py/crash_harness.py --kills 250`), including
kills while small items are written back from the log to their pads."""

from crash_harness import run


def test_sigkilled_writers_leave_a_consistent_store():
    report = run(kills=30, seed=2026)
    assert report.failures == []
    assert report.kills == 30
    assert report.kills_mid_operation > 0
    assert report.items_checked > 0
    assert report.kills_mid_flush > 0
    assert report.reopened_unflushed > 0
