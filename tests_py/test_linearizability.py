"""R9: the linearizability checker on histories written by hand (it accepts
what the model allows and catches a planted stale read and lost write), on
random histories linearizable by construction, and on recorded histories of
4 SIGKILLed writer processes on a folder and on Garage (bounded runs; the
long one is ``python tests_py/lin_harness.py --kills 200``)."""

from __future__ import annotations

import os
import random

import pytest
from lin_harness import run, s3_url
from linearizability import ABSENT, EXISTS, KILLED, OK, PENDING, Group, Op, check

needs_s3 = pytest.mark.skipif(
    not os.environ.get("ANTHILL_TEST_S3_URL"),
    reason='ANTHILL_TEST_S3_URL is unset: run `eval "$(scripts/garage.sh start 3)"` first '
    "(CI always does)",
)


class History:
    """Calls written by hand: ``put("p1", "a", "v1", 0, 10)``."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, process: str, kind: str, key: str, start: int, end: int | None, **kw) -> Op:
        outcome = kw.pop("outcome", OK if end is not None else KILLED)
        op = Op(len(self.ops), process, kind, key, start, end, outcome, **kw)
        self.ops.append(op)
        return op

    def put(self, p: str, key: str, value: str, start: int, end: int | None, **kw) -> Op:
        return self.add(p, "put", key, start, end, value=value, **kw)

    def get(self, p: str, key: str, value: str | None, start: int, end: int, **kw) -> Op:
        if value is None:
            kw.setdefault("outcome", ABSENT)
        return self.add(p, "get", key, start, end, value=value, **kw)


def test_a_sequential_history_is_linearizable() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.get("p2", "a", "v1", 20, 30)
    h.add("p1", "rename", "a", 40, 50, to="b", overwrite=False)
    h.get("p2", "a", None, 60, 70)
    h.get("p2", "b", "v1", 80, 90)
    h.add("p3", "remove", "b", 100, 110)
    h.add("p3", "remove", "b", 120, 130, outcome=ABSENT)
    h.get("p1", "b", None, 140, 150)
    assert check(h.ops) == []


def test_overlapping_calls_take_effect_in_some_order() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 100)
    h.put("p2", "a", "v2", 10, 90)
    h.get("p3", "a", "v1", 20, 30)  # p1's put first ...
    h.get("p3", "a", "v2", 40, 50)  # ... then p2's
    h.get("p4", "a", "v2", 200, 210)
    assert check(h.ops) == []
    # But every reader must agree on one order.
    h.get("p4", "a", "v1", 220, 230)
    [anomaly] = check(h.ops)
    assert anomaly.op.id == 5


def test_a_stale_read_is_caught() -> None:
    """A get returning a value overwritten before it was invoked."""
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.put("p2", "a", "v2", 20, 30)
    stale = h.get("p3", "a", "v1", 40, 50)
    h.get("p1", "a", "v2", 60, 70)
    [anomaly] = check(h.ops)
    assert anomaly.op.id == stale.id
    assert anomaly.kind == "stale read"
    assert "p2 put(a=v2) -> ok [20, 30]" in str(anomaly)
    # Allowed to lag 25 ns, a read without a refresh may return v1.
    stale.fresh = False
    assert check(h.ops, stale_read_ns=25) == []
    assert len(check(h.ops, stale_read_ns=5)) == 1


def test_a_lost_write_is_caught() -> None:
    """An acknowledged put whose value is gone by a later read."""
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.put("p2", "b", "w1", 5, 15)
    h.put("p1", "a", "v2", 20, 30)
    lost = h.get("final", "a", "v1", 100, 110)
    h.get("final", "b", "w1", 120, 130)
    [anomaly] = check(h.ops)
    assert anomaly.op.id == lost.id
    assert anomaly.kind in ("lost write", "stale read or lost write")
    assert anomaly.keys == ("a",)

    h = History()
    h.put("p1", "a", "v1", 0, 10)
    lost = h.get("final", "a", None, 100, 110)
    [anomaly] = check(h.ops)
    assert (anomaly.op.id, anomaly.kind) == (lost.id, "lost write")


def test_an_outcome_the_model_never_gives_is_an_anomaly() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    refused = h.put("p2", "a", "v2", 20, 30, outcome=EXISTS)  # overwrite=True never refuses
    [anomaly] = check(h.ops)
    assert anomaly.op.id == refused.id


def test_a_killed_call_takes_effect_at_any_later_instant_or_never() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.put("p2", "a", "v2", 20, None)  # killed
    h.get("p3", "a", "v1", 100, 110)
    h.get("p3", "a", "v2", 1000, 1010)  # it landed late
    assert check(h.ops) == []
    h.get("p3", "a", "v1", 2000, 2010)  # but once only
    assert len(check(h.ops)) == 1

    never = History()
    never.put("p1", "a", "v1", 0, 10)
    never.put("p2", "a", "v2", 20, None)
    never.add("p1", "remove", "a", 30, 40)
    never.add("p3", "remove", "a", 50, 60, outcome=ABSENT)
    assert check(never.ops) == []


def test_a_killed_large_put_may_leave_its_key_pending() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.put("p2", "a", "v2", 20, None, large=True)
    h.put("p3", "a", "v3", 100, 110, outcome=PENDING)  # refused: an upload is pending
    h.get("p3", "a", "v1", 120, 130)  # the old value stays readable
    h.add("p3", "remove", "a", 140, 150)
    h.put("p3", "a", "v4", 160, 170)
    assert check(h.ops) == []
    # A small put cannot leave it pending.
    h.ops[1].large = False
    assert len(check(h.ops)) == 1


def test_renames_move_values_and_refuse_as_the_model_says() -> None:
    h = History()
    h.put("p1", "a", "v1", 0, 10)
    h.put("p1", "b", "w1", 20, 30)
    h.add("p2", "rename", "a", 40, 50, to="b", overwrite=False, outcome=EXISTS)
    h.add("p2", "rename", "a", 60, 70, to="b", overwrite=True)
    h.get("p3", "b", "v1", 80, 90)
    h.add("p2", "rename", "a", 100, 110, to="b", outcome=ABSENT)
    assert check(h.ops) == []
    # A rename that said the target exists when it did not.
    h.add("p2", "rename", "b", 120, 130, to="c", overwrite=False, outcome=EXISTS)
    [anomaly] = check(h.ops)
    assert anomaly.op.id == 6
    assert anomaly.keys == ("a", "b", "c")


def random_history(
    rng: random.Random, processes: int, calls: int, killed_rate: float, forever: bool
) -> list[Op]:
    """Calls of `processes` overlapping processes on 3 keys, each given a
    random instant inside its interval, and outcomes from running them in
    the order of those instants on the model: linearizable by construction.
    Some calls are killed (their effect applied or not, their outcome
    unknown), able to take effect until a deadline a little after their
    process died, or (`forever`) at any later instant."""
    keys = ("x", "y", "z")
    group = Group(keys)
    planned = []
    clock = [0] * processes
    for n in range(calls):
        p = rng.randrange(processes)
        start = clock[p] + rng.randrange(1, 50)
        end = start + rng.randrange(1, 200)
        clock[p] = end
        key = rng.choice(keys)
        kind = rng.choice(["put", "put", "get", "get", "remove", "rename"])
        to = rng.choice([k for k in keys if k != key]) if kind == "rename" else None
        killed = kind != "get" and rng.random() < killed_rate
        if killed:
            clock[p] = end + 1000  # a new life of the process
        op = Op(n, f"p{p}", kind, key, start, None if killed else end, KILLED if killed else OK)
        op.to, op.overwrite = to, rng.random() < 0.5
        op.value = f"v{n}" if kind == "put" else None
        op.large = kind == "put" and rng.random() < 0.3
        if killed and not forever:
            op.deadline = end + rng.randrange(300)
        planned.append((rng.randrange(start, end + 1), op, killed and rng.random() < 0.5))
    state = group.initial()
    for _, op, skipped in sorted(planned, key=lambda item: item[0]):
        if skipped:
            continue
        if op.outcome == KILLED:
            after = group.effects(state, op)
            state = rng.choice(after) if after else state
            continue
        for outcome in (OK, ABSENT, EXISTS, PENDING):
            probe = Op(**{**op.__dict__, "outcome": outcome})
            if op.kind == "get":
                probe.value = dict(zip(keys, state))[op.key][0]
                probe.outcome = OK if probe.value is not None else ABSENT
            after = group.effects(state, probe)
            if after:
                op.outcome, op.value = probe.outcome, probe.value
                state = after[0]
                break
    return [op for _, op, _ in planned]


@pytest.mark.parametrize("seed", range(20))
def test_random_linearizable_histories_pass(seed: int) -> None:
    rng = random.Random(seed)
    ops = random_history(rng, processes=4, calls=400, killed_rate=0.05, forever=False)
    assert check(ops) == []
    # Killed calls that may take effect at any later instant: fewer of them.
    ops = random_history(rng, processes=4, calls=200, killed_rate=0.02, forever=True)
    assert check(ops) == []


def test_bounded_run_on_a_folder_is_linearizable() -> None:
    report = run(kills=20, seed=2026)
    assert report.failures == [], "\n".join(report.failures)
    assert report.kills == 20
    assert report.kills_mid_call > 0
    assert report.calls_completed > 300
    assert report.anomalies == []


@needs_s3
def test_bounded_run_on_garage_is_linearizable() -> None:
    report = run(kills=8, seed=2027, url=s3_url())
    assert report.failures == [], "\n".join(report.failures)
    assert report.kills == 8
    assert report.calls_completed > 50
    assert report.anomalies == []


@pytest.mark.parametrize("fault", ["stale-cache", "second-handle", "lost-write"])
def test_a_planted_fault_in_a_real_run_is_caught(fault: str) -> None:
    """A writer answering gets from a cache or a second store handle it
    never refreshes, or acknowledging puts it never made: the checker names
    the anomaly. A run is a few seconds of calls, so on a busy machine it
    may hold too few reads after a fault to show it: up to three runs."""
    for attempt in range(3):
        report = run(kills=3, seed=7 + attempt, fault=fault)
        if report.anomalies:
            break
    assert report.anomalies, report
    first_lines = [anomaly.split("\n")[0] for anomaly in report.anomalies]
    if fault != "lost-write":
        assert any(line.startswith("stale read") for line in first_lines), first_lines
    # A put acknowledged and lost shows as a read of an older value (or of
    # nothing), which the history alone cannot tell from a stale read.
