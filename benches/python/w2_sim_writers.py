"""W2 many writers over a network: N = 1, 2, 4 writer processes started
together, each with its own handle on one `sim+file://<folder>?latency_ms=20`
store (a folder behind a simulated network: every backend call takes 20 ms,
as for machines writing one store over a network), each storing its own
keys: a sync loop of 1 KiB puts, and one of 1 MiB puts. anthill alone: the
target compares N = 4 with N = 1 (the harness is writers.py).
"""

from __future__ import annotations

from common import KIB, MIB, QUICK, emit
from writers import create_anthill, fresh_folder, run_cases

LATENCY_MS = 20
DURATION_S = 1.0 if QUICK else 3.0
ROUNDS = 1 if QUICK else 2


def sim_store() -> str:
    folder = fresh_folder("w2-anthill")
    return create_anthill(f"sim+file://{folder}?latency_ms={LATENCY_MS}")


def main() -> None:
    result = {
        "latency_ms": LATENCY_MS,
        "small": run_cases({"anthill": sim_store}, KIB, DURATION_S, ROUNDS),
        "large": run_cases({"anthill": sim_store}, MIB, DURATION_S, ROUNDS),
    }
    emit(result)


if __name__ == "__main__":
    main()
