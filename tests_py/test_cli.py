"""The command line, run as a user would: ``python -m anthill`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anthill
import pytest
from conftest import PAD_SIZE, SECRET


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A local folder store with 4 KiB pads (the CLI keeps a store's pad size)."""
    path = tmp_path / "store"
    anthill.open(path, secret=SECRET, pad_size=PAD_SIZE).close()
    return path


def run(
    *args: str,
    store: Path | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "anthill"]
    if store is not None:
        command += ["--store", str(store)]
    return subprocess.run(
        command + list(args),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def summary(path: Path) -> anthill.StorageSummary:
    with anthill.open(path, secret=SECRET) as store:
        return store.summary()


def test_put_from_a_file_and_get_to_stdout_and_to_a_file(store_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    data = os.urandom(3 * PAD_SIZE + 100)
    source.write_bytes(data)
    put = run("put", "docs/input", str(source), "--yes", store=store_path)
    assert put.returncode == 0, put.stderr
    assert b"Store 12.1 KiB?" in put.stderr and b"(+4 needed)" in put.stderr
    assert b"stored 'docs/input'" in put.stderr

    got = run("get", "docs/input", store=store_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout == data

    target = tmp_path / "out.bin"
    to_file = run("get", "docs/input", "-o", str(target), store=store_path)
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == b""
    assert target.read_bytes() == data


def test_put_from_stdin(store_path: Path) -> None:
    put = run("put", "piped", "-", "--yes", store=store_path, input=b"from a pipe")
    assert put.returncode == 0, put.stderr
    implicit = run("put", "implicit", "--yes", store=store_path, input=b"no FILE means stdin")
    assert implicit.returncode == 0, implicit.stderr
    assert run("get", "piped", store=store_path).stdout == b"from a pipe"
    assert run("get", "implicit", store=store_path).stdout == b"no FILE means stdin"


def test_put_declines_without_a_terminal_and_spends_nothing(
    store_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(b"x" * 5000)
    before = summary(store_path)
    put = run("put", "k", str(source), store=store_path)  # stdin: /dev/null
    assert put.returncode == 1
    last = put.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("anthill: error: not stored:") and "--yes" in last
    assert summary(store_path) == before

    # Data on stdin: the question cannot be answered there either.
    piped = run("put", "k", "-", store=store_path, input=b"x" * 5000)
    assert piped.returncode == 1
    assert b"--yes" in piped.stderr
    assert summary(store_path) == before


def test_put_into_free_space_needs_no_answer(store_path: Path) -> None:
    assert run("put", "first", "--yes", store=store_path, input=b"a" * 100).returncode == 0
    second = run("put", "second", "-", store=store_path, input=b"b" * 100)
    assert second.returncode == 0, second.stderr
    assert b"[y/N]" not in second.stderr


def test_put_answers_on_a_terminal(store_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(b"t" * 5000)
    for answer, code in [(b"n\n", 1), (b"y\n", 0)]:
        controller, terminal = os.openpty()
        os.write(controller, answer)
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "anthill",
                    "--store",
                    str(store_path),
                    "put",
                    "tty",
                    str(source),
                ],
                stdin=terminal,
                check=False,
                capture_output=True,
                timeout=120,
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert result.returncode == code, result.stderr
        assert b"[y/N]" in result.stderr
    assert run("get", "tty", store=store_path).stdout == b"t" * 5000


def test_existing_key_needs_force(store_path: Path) -> None:
    assert run("put", "k", "--yes", store=store_path, input=b"one").returncode == 0
    again = run("put", "k", "--yes", store=store_path, input=b"two")
    assert again.returncode == 1
    assert (
        again.stderr.decode()
        .strip()
        .splitlines()[-1]
        .startswith("anthill: error: key 'k' is already stored; pass --force")
    )
    forced = run("put", "k", "--yes", "--force", store=store_path, input=b"two")
    assert forced.returncode == 0, forced.stderr
    assert run("get", "k", store=store_path).stdout == b"two"


def test_ls_rm_and_stats(store_path: Path) -> None:
    for key, value in [("b", b"bb"), ("a", b"a" * 5000), ("c/d", b"")]:
        assert run("put", key, "--yes", store=store_path, input=value).returncode == 0
    listed = run("ls", store=store_path)
    assert listed.returncode == 0
    assert listed.stdout.decode().splitlines() == ["a", "b", "c/d"]

    long = run("ls", "-l", store=store_path)
    lines = long.stdout.decode().splitlines()
    assert [line.split() for line in lines[:3]] == [["5000", "a"], ["2", "b"], ["0", "c/d"]]
    assert lines[3].startswith("3 items")

    stats = run("stats", store=store_path)
    assert stats.returncode == 0
    text = stats.stdout.decode()
    assert "items            3" in text
    assert f"{PAD_SIZE // 1024}.0 KiB" in text

    removed = run("rm", "b", store=store_path)
    assert removed.returncode == 0, removed.stderr
    assert run("ls", store=store_path).stdout.decode().splitlines() == ["a", "c/d"]

    missing = run("rm", "b", store=store_path)
    assert missing.returncode == 1
    assert missing.stderr == b'anthill: error: key "b" is not in the store\n'
    assert run("get", "nope", store=store_path).returncode == 1


def test_the_store_variable_and_usage_errors(store_path: Path) -> None:
    env = {"ANTHILL_STORE": str(store_path)}
    assert run("put", "k", "--yes", input=b"v", env=env).returncode == 0
    assert run("ls", env=env).stdout == b"k\n"
    usage = run("frobnicate")
    assert usage.returncode == 2
    assert b"usage:" in usage.stderr
    assert run().returncode == 2
    assert run("--version").stdout.startswith(b"anthill ")


def test_errors_are_one_line(tmp_path: Path) -> None:
    anthill.open(tmp_path / "store", secret="one", pad_size=PAD_SIZE).close()
    wrong = run("ls", store=tmp_path / "store", env={"ANTHILL_SECRET": "one"})
    assert wrong.returncode == 0
    wrong = run("ls", store=tmp_path / "store", env={"ANTHILL_SECRET": "two"})
    assert wrong.returncode == 1
    assert wrong.stderr.count(b"\n") == 1
    assert wrong.stderr.startswith(b"anthill: error: ") and b"secret" in wrong.stderr
    unreadable = run(
        "put",
        "k",
        str(tmp_path / "missing-file"),
        "--yes",
        store=tmp_path / "store",
        env={"ANTHILL_SECRET": "one"},
    )
    assert unreadable.returncode == 1
    assert (
        unreadable.stderr
        == f"anthill: error: cannot read {tmp_path / 'missing-file'}: No such file or directory\n".encode()
    )


def test_console_script_is_installed() -> None:
    import shutil

    script = shutil.which("anthill", path=os.path.dirname(sys.executable))
    assert script is not None
    result = subprocess.run([script, "--help"], check=False, capture_output=True, timeout=60)
    assert result.returncode == 0
    for command in (b"put", b"get", b"rm", b"ls", b"stats"):
        assert command in result.stdout
