"""A linearizability checker for histories of a key-value store (R9).

A history is a list of operations, each with the process that ran it, its
invocation and completion times (one clock shared by every process), its
arguments and its outcome. It is linearizable if every operation can be
given one instant between its invocation and its completion at which it
takes effect, all at once, such that the operations in that order are a run
of the sequential model below giving every recorded outcome. An operation
whose process was killed before it completed has no completion: it may take
effect at any instant after its invocation until its deadline (``None``:
ever), or never.

The model (one store, keys to values, values identified by the unique tag
of the put that wrote them):

1. ``put(k, v)`` (``overwrite=True``): `k` holds `v`. Refused with
   ``UploadPendingError`` while `k` has an interrupted upload ("pending").
   A put of an item larger than a pad that is killed may leave `k` pending
   (its old value, if any, still readable) instead of holding `v`.
2. ``remove(k)``: `k` holds nothing and is no longer pending;
   ``KeyNotFoundError`` if it held nothing and was not pending.
3. ``rename(a, b, overwrite)``: `b` holds what `a` held, `a` nothing.
   ``KeyNotFoundError`` if `a` holds nothing; else ``UploadPendingError`` if
   `a` or `b` is pending; else ``KeyExistsError`` if `b` holds a value and
   not `overwrite`.
4. ``get(k)``: the value `k` holds, or ``KeyNotFoundError``.

The search is Lowe's just-in-time variant of the Wing & Gong algorithm: the
history is walked in time order, keeping every configuration (model state,
operations invoked but not yet linearized) that explains it so far; at each
completion, configurations that have not linearized that operation yet
linearize any of the open ones, in any order, until they have. No
configuration left means no linearization exists: the completion is the
anomaly, reported with the operations around it. Three reductions keep the
set small:

- Locality: a history is linearizable iff the sub-history of each object is
  (Herlihy and Wing). Keys only renames connect are separate objects, so
  each group of keys is checked on its own.
- Values no read returned are indistinguishable to the model (it compares
  values only with what reads returned): they all become one ``UNREAD``.
- Killed operations never complete: they stay open until their deadline
  (then each configuration either has linearized one or gives it up), or
  for good without one. Those with one effect and deadline (same kind,
  keys and value) are interchangeable, so a configuration keeps a count of
  each kind left rather than their ids; and a configuration with the same
  state and normal open operations as another, but a subset of its killed
  ones left, is dropped (the other can do whatever it can). Without
  deadlines the set still grows with every killed call: affordable for a
  few of them only.
- A value is forgotten (made ``UNREAD``) after the last get that returned
  it has completed: nothing compares it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

UNREAD = "<unread>"

# Outcomes as recorded by the harness.
OK, ABSENT, EXISTS, PENDING, KILLED = "ok", "absent", "exists", "pending", "killed"


@dataclass
class Op:
    """One call: ``kind`` is put, remove, rename or get; ``value`` is the
    tag a put wrote or a get returned (``None``: nothing); ``end`` is
    ``None`` for a call that never completed (killed, or an error that
    leaves its effect unknown)."""

    id: int
    process: str
    kind: str
    key: str
    start: int
    end: int | None
    outcome: str
    value: str | None = None
    to: str | None = None
    overwrite: bool = True
    large: bool = False
    fresh: bool = True
    # A call that never completed can take effect until then (None: ever).
    deadline: int | None = None

    def keys(self) -> tuple[str, ...]:
        return (self.key, self.to) if self.to is not None else (self.key,)

    def describe(self) -> str:
        args = f"{self.key}->{self.to}" if self.kind == "rename" else self.key
        if self.kind == "put":
            args += f"={self.value}" + (" (large)" if self.large else "")
        if self.kind == "rename" and self.overwrite:
            args += " overwrite"
        result = self.outcome
        if self.kind == "get" and self.outcome == OK:
            result = f"= {self.value}"
        if self.kind == "get" and not self.fresh:
            args += " (no refresh)"
        end = str(self.end)
        if self.end is None:
            end = (
                "never; in effect by "
                + ("any time" if self.deadline is None else str(self.deadline))
                + " or not at all"
            )
        return f"#{self.id} {self.process} {self.kind}({args}) -> {result} [{self.start}, {end}]"


@dataclass
class Anomaly:
    """No linearization explains ``op``'s completion; ``kind`` is a guess at
    what went wrong (stale read, lost write, ...), ``excerpt`` the group's
    operations around it."""

    op: Op
    kind: str
    keys: tuple[str, ...]
    excerpt: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.kind}: {self.op.describe()} (keys {', '.join(self.keys)})"]
        return "\n  ".join(lines + self.excerpt)


# The outcomes each kind of call can have in the model (KILLED: unknown).
ALLOWED = {
    "get": {OK, ABSENT},
    "put": {OK, PENDING, KILLED},
    "remove": {OK, ABSENT, KILLED},
    "rename": {OK, ABSENT, PENDING, EXISTS, KILLED},
}

# A key's state: (value or None, pending); a group's: one per key, in order.
KeyState = tuple[str | None, bool]


class Group:
    """The keys renames connect, and the model over them."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = tuple(sorted(keys))
        self.slot = {key: i for i, key in enumerate(self.keys)}

    def initial(self) -> tuple[KeyState, ...]:
        return tuple((None, False) for _ in self.keys)

    def effects(self, state: tuple[KeyState, ...], op: Op) -> list[tuple[KeyState, ...]]:
        """States after `op` takes effect in `state` with its recorded
        outcome (a killed call: any of its successful effects); none if
        the outcome is impossible there."""
        k = self.slot[op.key]
        value, pending = state[k]
        outcome = op.outcome

        def with_(*changes: tuple[int, KeyState]) -> tuple[KeyState, ...]:
            new = list(state)
            for index, key_state in changes:
                new[index] = key_state
            return tuple(new)

        if outcome not in ALLOWED[op.kind]:
            return []  # an outcome the model never gives (put -> exists, ...)
        if op.kind == "get":
            if outcome == OK:
                return [state] if value is not None and value == op.value else []
            return [state] if value is None else []
        if op.kind == "put":
            if outcome == PENDING:
                return [state] if pending else []
            if pending:
                return []
            written = [with_((k, (op.value, False)))]
            if outcome == KILLED and op.large:
                written.append(with_((k, (value, True))))
            return written
        if op.kind == "remove":
            present = value is not None or pending
            if outcome == ABSENT:
                return [state] if not present else []
            return [with_((k, (None, False)))] if present else []
        # rename
        assert op.to is not None
        t = self.slot[op.to]
        target, target_pending = state[t]
        if outcome == ABSENT:
            return [state] if value is None else []
        if value is None:
            return []
        if outcome == PENDING:
            return [state] if pending or target_pending else []
        if pending or target_pending:
            return []
        if k == t:
            return [state] if outcome in (OK, KILLED) else []
        if outcome == EXISTS:
            return [state] if target is not None and not op.overwrite else []
        if target is not None and not op.overwrite:
            return []
        return [with_((k, (None, False)), (t, (value, False)))]


def killed_class(op: Op) -> tuple:
    """What a killed call can do, and until when: calls of one class are
    interchangeable."""
    return (op.kind, op.key, op.to, op.value, op.overwrite, op.large, op.deadline)


# A configuration: model state, the normal calls open (ids), the killed
# calls left (class -> count, as a sorted tuple).
Config = tuple[tuple[KeyState, ...], frozenset[int], tuple[tuple[tuple, int], ...]]


def _dominated(config: Config, others: dict[tuple, list[Counter]]) -> bool:
    state, open_calls, killed = config
    mine = Counter(dict(killed))
    for other in others.get((state, open_calls), []):
        if all(other[c] >= n for c, n in mine.items()):
            return True
    return False


def _prune(configs: Iterable[Config]) -> list[Config]:
    """Drops configurations another one dominates (same state and open
    normal calls, at least as many killed calls left of every class)."""
    by_total = sorted(set(configs), key=lambda c: -sum(n for _, n in c[2]))
    kept: dict[tuple, list[Counter]] = {}
    result = []
    for config in by_total:
        if _dominated(config, kept):
            continue
        kept.setdefault((config[0], config[1]), []).append(Counter(dict(config[2])))
        result.append(config)
    return result


def check_group(group: Group, ops: list[Op]) -> Anomaly | None:
    """The first completion no linearization of `ops` (all on `group`'s
    keys) explains, or ``None`` if the history is linearizable."""
    by_id = {op.id: op for op in ops}
    events: list[tuple[int, int, int]] = []  # (time, 0 invoke / 1 complete, id)
    for op in ops:
        if op.kind == "get" and op.end is None:
            continue  # a read that never completed changed nothing
        events.append((op.start, 0, op.id))
        if op.end is not None:
            events.append((op.end, 1, op.id))
        elif op.deadline is not None:
            events.append((op.deadline, 3, op.id))
    # After the last read of a value, nothing compares it again: it joins
    # the unread ones (2: after that read's completion, at the same time).
    last_read: dict[str, int] = {}
    for op in ops:
        if op.kind == "get" and op.outcome == OK and op.end is not None and op.value:
            last_read[op.value] = max(last_read.get(op.value, op.end), op.end)
    forget = {}
    for value, time in last_read.items():
        forget.setdefault(time, []).append(value)
    events += [(time, 2, -1) for time in forget]
    # At equal times an invocation comes first: the calls overlap (the
    # weaker, never falsely failing, reading of a tie).
    events.sort()
    classes = {op.id: killed_class(op) for op in ops if op.end is None}
    configs: list[Config] = [(group.initial(), frozenset(), ())]
    for time, kind, op_id in events:
        if kind == 2:
            configs = _prune(unread(config, set(forget[time])) for config in configs)
            continue
        if kind == 3:  # a killed call's last chance to take effect
            configs = complete(group, by_id, configs, expiring=classes[op_id])
            continue
        if kind == 0:
            if op_id in classes:
                configs = [add_killed(config, classes[op_id]) for config in configs]
            else:
                configs = [(s, calls | {op_id}, k) for s, calls, k in configs]
            continue
        configs = complete(group, by_id, configs, done=op_id)
        if not configs:
            return explain(group, ops, by_id[op_id])
    return None


def unread(config: Config, values: set[str]) -> Config:
    """`config` with `values` made ``UNREAD``."""
    state, calls, killed = config
    state = tuple((UNREAD if v in values else v, p) for v, p in state)
    counts: dict[tuple, int] = {}
    for cls, count in killed:
        if cls[3] in values:
            cls = cls[:3] + (UNREAD,) + cls[4:]
        counts[cls] = counts.get(cls, 0) + count
    return (state, calls, tuple(sorted(counts.items(), key=repr)))


def expire(config: Config, cls: tuple) -> Config:
    state, calls, killed = config
    return (state, calls, tuple(item for item in killed if item[0][-1] != cls[-1]))


def add_killed(config: Config, cls: tuple) -> Config:
    state, calls, killed = config
    counts = dict(killed)
    counts[cls] = counts.get(cls, 0) + 1
    return (state, calls, tuple(sorted(counts.items(), key=repr)))


def complete(
    group: Group,
    by_id: dict[int, Op],
    configs: list[Config],
    done: int | None = None,
    expiring: tuple | None = None,
) -> list[Config]:
    """The configurations that have linearized the call `done`, from
    `configs`, by linearizing open calls (normal and killed) before it. With
    `expiring` (a killed call's class) instead: those that have linearized
    it, or never will."""
    result: list[Config] = []
    seen: set[Config] = set()
    frontier = []
    for config in configs:
        if done in config[1] or expiring is not None:
            frontier.append(config)
        else:
            result.append(config)
    if expiring is not None:
        result += [expire(config, expiring) for config in configs]
    frontier = _prune(frontier)
    while frontier:
        following: list[Config] = []
        for state, calls, killed in frontier:
            for call in calls:
                for after in group.effects(state, by_id[call]):
                    nxt = (after, calls - {call}, killed)
                    if call == done:
                        result.append(nxt)
                    elif nxt not in seen:
                        seen.add(nxt)
                        following.append(nxt)
            for index, (cls, count) in enumerate(killed):
                for after in group.effects(state, _class_op(cls)):
                    left = killed[:index] + ((cls, count - 1),) * (count > 1) + killed[index + 1 :]
                    nxt = (after, calls, left)
                    if cls == expiring:
                        result.append(expire(nxt, expiring))
                    elif nxt not in seen:
                        seen.add(nxt)
                        following.append(nxt)
        frontier = _prune(following)
    return _prune(result)


def _class_op(cls: tuple) -> Op:
    kind, key, to, value, overwrite, large, _ = cls
    return Op(-1, "killed", kind, key, 0, None, KILLED, value, to, overwrite, large)


def groups_of(ops: list[Op]) -> list[Group]:
    """Keys connected by renames, each set one group (union-find)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for op in ops:
        keys = op.keys()
        for key in keys:
            root(key)
        if len(keys) == 2:
            parent[root(keys[0])] = root(keys[1])
    members: dict[str, set[str]] = {}
    for key in parent:
        members.setdefault(root(key), set()).add(key)
    return [Group(keys) for keys in sorted(members.values(), key=sorted)]


def unread_values_merged(ops: list[Op]) -> list[Op]:
    """Puts of a value no get returned write ``UNREAD`` instead (see the
    module header)."""
    read = {op.value for op in ops if op.kind == "get" and op.outcome == OK}
    merged = []
    for op in ops:
        if op.kind == "put" and op.value not in read:
            op = Op(**{**op.__dict__, "value": UNREAD})
        merged.append(op)
    return merged


def check(ops: list[Op], stale_read_ns: int = 0) -> list[Anomaly]:
    """Checks each group of keys; one anomaly (the first) per group that is
    not linearizable. Gets recorded without a refresh (``fresh=False``) may
    return what the store held up to `stale_read_ns` before they began."""
    widened = [
        Op(**{**op.__dict__, "start": op.start - stale_read_ns})
        if op.kind == "get" and not op.fresh and stale_read_ns
        else op
        for op in ops
    ]
    merged = unread_values_merged(widened)
    anomalies = []
    for group in groups_of(merged):
        members = [op for op in merged if op.key in group.slot]
        anomaly = check_group(group, members)
        if anomaly is not None:
            original = {op.id: op for op in ops}
            anomaly.op = original[anomaly.op.id]
            anomalies.append(anomaly)
    return anomalies


def explain(group: Group, ops: list[Op], failed: Op) -> Anomaly:
    """Names what most likely went wrong at `failed`, with the calls on its
    key(s) that end after the last write that must precede it began."""
    keys = failed.keys()
    writes = [
        op
        for op in ops
        if op.kind != "get"
        and op.end is not None
        and op.outcome == OK
        and set(op.keys()) & set(keys)
    ]
    before = [op for op in writes if op.end is not None and op.end < failed.start]
    last = max(before, key=lambda op: op.end or 0, default=None)
    kind = "not linearizable"
    if failed.kind == "get" and failed.outcome == OK:
        source = next((op for op in ops if op.kind == "put" and op.value == failed.value), None)
        if source is None or failed.value == UNREAD:
            kind = "read of a value no put wrote"
        elif last is not None and source.end is not None and source.end < last.start:
            # A value overwritten before the read began: a stale read if
            # some get returned the newer value, else maybe a lost write.
            seen = last.kind != "put" or last.value != UNREAD
            kind = "stale read" if seen else "stale read or lost write"
    elif failed.kind == "get" and last is not None and last.kind in ("put", "rename"):
        kind = "lost write"
    since = last.start if last is not None else failed.start
    window = [
        op
        for op in ops
        if set(op.keys()) & set(keys)
        and not (op.kind == "get" and op.end is None)
        and last_instant(op) >= since
        and op.start <= (failed.end or failed.start)
    ]
    return Anomaly(failed, kind, group.keys, [op.describe() for op in window[-40:]])


def last_instant(op: Op) -> float:
    """The last instant `op` can take effect at."""
    if op.end is not None:
        return op.end
    return op.deadline if op.deadline is not None else float("inf")
