"""Rust log records reach Python's logging (configure it before using anthill:
levels are cached on first use)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
import anthill
anthill.open("sim+memory://logged?latency_ms=1", secret="s").close()
"""


def test_rust_records_reach_python_logging() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "anthill.python.store DEBUG opened the store at sim+memory://logged" in result.stderr
    assert "latency_ms" not in result.stderr  # the URL's query (credentials) is not logged


def test_quiet_by_default() -> None:
    quiet = SCRIPT.replace("logging.basicConfig(level=logging.DEBUG, ", "logging.basicConfig(")
    result = subprocess.run(
        [sys.executable, "-c", quiet], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "opened the store" not in result.stderr
