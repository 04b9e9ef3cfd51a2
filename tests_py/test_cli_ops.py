"""The store operations on the command line: ``anthill mv``, ``verify``,
``compact`` and ``stats --map``, run in a subprocess as a user would."""

from __future__ import annotations

from pathlib import Path

import anthill
from conftest import SECRET
from test_cli import run, store_path  # noqa: F401 (a fixture)


def _put(path: Path, items: dict[str, bytes]) -> None:
    with anthill.open(path, secret=SECRET) as store:
        for key, data in items.items():
            store.store_item(key, data)


def test_mv(store_path: Path) -> None:  # noqa: F811
    _put(store_path, {"a": b"alpha", "b": b"beta"})
    result = run("mv", "a", "c", store=store_path)
    assert result.returncode == 0, result.stderr
    refused = run("mv", "c", "b", store=store_path)
    assert refused.returncode == 1
    assert b"--force" in refused.stderr and len(refused.stderr.splitlines()) == 1
    missing = run("mv", "nothing", "d", store=store_path)
    assert missing.returncode == 1 and b"nothing" in missing.stderr
    forced = run("mv", "c", "b", "--force", store=store_path)
    assert forced.returncode == 0, forced.stderr
    with anthill.open(store_path, secret=SECRET) as store:
        assert list(store.keys()) == ["b"]
        assert store.fetch_item("b") == b"alpha"


def test_verify_exit_status(store_path: Path) -> None:  # noqa: F811
    _put(store_path, {f"k{i}": bytes([i]) * (1000 * i + 10) for i in range(12)})
    ok = run("verify", store=store_path)
    assert ok.returncode == 0, ok.stderr
    assert b"ok: 12 items checked" in ok.stdout
    pad = max((store_path / "p").iterdir(), key=lambda p: p.stat().st_size)
    raw = bytearray(pad.read_bytes())
    raw[-5] ^= 1
    pad.write_bytes(bytes(raw))
    bad = run("verify", store=store_path)
    assert bad.returncode == 1
    lines = bad.stdout.decode().splitlines()
    assert any(line.startswith("damaged: k") for line in lines)
    assert lines[-1].startswith("NOT OK")
    quick = run("verify", "--quick", store=store_path)  # the pad is there: not found
    assert quick.returncode == 0, quick.stdout


def test_compact_and_stats_map(store_path: Path) -> None:  # noqa: F811
    items = {f"k{i}": bytes([i]) * 3000 for i in range(40)}
    _put(store_path, items)
    with anthill.open(store_path, secret=SECRET) as store:
        for i in range(40):
            if i % 4:
                store.remove_item(f"k{i}")
        pads = store.summary().total_pads
    picture = run("stats", "--map", store=store_path)
    assert picture.returncode == 0, picture.stderr
    lines = picture.stdout.decode().splitlines()
    cells = "".join(lines[: lines.index(next(x for x in lines if " pads of " in x))])
    assert len(cells) == pads
    assert f"{pads} pads of 4.0 KiB" in picture.stdout.decode()
    compacted = run("compact", store=store_path)
    assert compacted.returncode == 0, compacted.stderr
    assert compacted.stdout.decode().startswith(f"{pads} -> ")
    with anthill.open(store_path, secret=SECRET) as store:
        after = store.summary().total_pads
        assert after < pads
        for i in range(0, 40, 4):
            assert store.fetch_item(f"k{i}") == items[f"k{i}"]
    again = run("stats", "--map", store=store_path)
    assert f"{after} pads of" in again.stdout.decode()
