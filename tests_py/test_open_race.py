"""Several processes opening one new store at once all end up in the same
store, and nothing any of them stored is lost.

Four worker processes wait at a common instant, open a store that does not
exist yet (a folder, an S3 prefix on the Garage cluster, or the default store
with its key file in a fresh home folder), each store one key, and close. Then
every key must read back. This is what pytest-xdist workers, a notebook beside
the CLI, or a batch of jobs do on first use.

``ANTHILL_RACE_TRIALS`` sets the trials per backend (CI: the default below;
``scripts/reliability.sh``: 200), and ``ANTHILL_RACE_REPORT`` names a JSON file
the results are appended to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthill
import pytest
from test_s3 import S3_URL, fresh_s3_url, needs_s3

TRIALS = int(os.environ.get("ANTHILL_RACE_TRIALS", "50"))
WORKERS = 4
SECRET = "race secret"
PAD_SIZE = 4096

# Runs jobs read from standard input, one JSON line each: waits for the job's
# start instant, opens the store, stores one key, closes, and answers one line.
WORKER = r"""
import json, os, sys, time
import anthill
for line in sys.stdin:
    job = json.loads(line)
    for name, value in job["env"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    time.sleep(max(0.0, job["start_at"] - time.time()))
    try:
        with anthill.open(job["url"], **job["options"]) as store:
            store.store_item(job["key"], job["value"].encode())
        answer = {"ok": True}
    except Exception as error:
        answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(answer), flush=True)
"""


class Workers:
    """Worker processes kept for the whole test, so a trial's four opens
    start within a millisecond of each other rather than a Python start-up
    apart."""

    def __init__(self, count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start_at = time.time() + 0.2
        for process, job in zip(self.processes, jobs):
            assert process.stdin is not None
            process.stdin.write(json.dumps({**job, "start_at": start_at}) + "\n")
            process.stdin.flush()
        answers = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line, f"worker {process.pid} died (exit status {process.poll()})"
            answers.append(json.loads(line))
        return answers

    def close(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self.processes:
            process.wait(timeout=30)


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers(WORKERS)
    yield pool
    pool.close()


def value_of(trial: int, worker: int) -> str:
    return f"trial {trial} worker {worker} " * 20


def report(backend: str, trials: int, failures: list[str]) -> None:
    path = os.environ.get("ANTHILL_RACE_REPORT")
    if path:
        with open(path, "a") as out:
            line = {"backend": backend, "trials": trials, "failures": failures}
            out.write(json.dumps(line) + "\n")


def race(
    workers: Workers,
    backend: str,
    new_store: Any,
    options: dict[str, Any],
    env: dict[str, str | None] | None = None,
) -> None:
    """``TRIALS`` times: four workers open the store ``new_store(trial)``
    gives (a URL and the env to open it with) at once; all must succeed and
    every key must read back, from a fresh handle with the same settings."""
    failures = []
    for trial in range(TRIALS):
        url, trial_env = new_store(trial)
        trial_env = {**(env or {}), **trial_env}
        jobs = [
            {
                "url": url,
                "options": options,
                "env": trial_env,
                "key": f"worker-{worker}",
                "value": value_of(trial, worker),
            }
            for worker in range(WORKERS)
        ]
        answers = workers.run(jobs)
        errors = [a["error"] for a in answers if not a["ok"]]
        if not errors:
            try:
                errors = check_store(url, options, trial, trial_env)
            except anthill.AnthillError as error:
                errors = [f"reopening: {type(error).__name__}: {error}"]
        if errors:
            failures.append(f"trial {trial}: {errors}")
    report(backend, TRIALS, failures)
    assert failures == [], f"{len(failures)} of {TRIALS} trials failed: {failures[:3]}"


def check_store(
    url: str | None, options: dict[str, Any], trial: int, env: dict[str, str | None]
) -> list[str]:
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with anthill.open(url, **options) as store:
            wrong = [
                f"worker-{w} reads wrong"
                for w in range(WORKERS)
                if store.fetch_item(f"worker-{w}") != value_of(trial, w).encode()
            ]
            if len(store) != WORKERS:
                wrong.append(f"{len(store)} keys, expected {WORKERS}")
            return wrong
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_four_processes_create_one_folder_store(workers: Workers, tmp_path: Path) -> None:
    race(
        workers,
        "folder",
        lambda trial: (str(tmp_path / f"store-{trial}"), {}),
        {"secret": SECRET, "pad_size": PAD_SIZE},
    )


@needs_s3
# Four lease hand-overs a trial, each with Garage's settling pause: about
# 6 s a trial here.
@pytest.mark.timeout(60 + 20 * TRIALS)
def test_four_processes_create_one_s3_store(workers: Workers) -> None:
    assert S3_URL
    race(
        workers,
        "s3",
        lambda trial: (fresh_s3_url(), {}),
        {"secret": SECRET, "pad_size": PAD_SIZE},
    )


def test_four_processes_create_the_default_store_and_key_file(
    workers: Workers, tmp_path: Path
) -> None:
    """No secret and no store given: the first use creates the key file and
    the default store, from four processes at once."""

    def fresh_home(trial: int) -> tuple[None, dict[str, str | None]]:
        home = tmp_path / f"home-{trial}-{uuid.uuid4().hex[:8]}"
        home.mkdir()
        return None, {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
        }

    race(
        workers,
        "default store",
        fresh_home,
        {},
        env={"ANTHILL_SECRET": None, "ANTHILL_STORE": None},
    )
