"""Does an overwrite that its writer's death interrupts leave the object as
it was? On Garage 2.5.0, sometimes not: the object is gone (docs/s3.md, "An
interrupted overwrite can lose the object").

Each round puts an object (16 KiB by default: above Garage's 3 KiB inline
threshold), then starts a child process overwriting it, SIGKILLs the child
0–30 ms after it began its put, and reads the object three times over a
second. Prints how many rounds found it missing for good.

    eval "$(bash scripts/garage.sh start 3)"
    python scripts/garage_torn_overwrite.py [--rounds 100] [--size 16384]
    bash scripts/garage.sh stop

Needs obstore (installed by scripts/bench.sh, or `pip install obstore`) and
the AWS_* variables garage.sh prints.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

BUCKET = "anthill-test"


def store():
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=os.environ["AWS_ENDPOINT_URL"],
        region=os.environ.get("AWS_DEFAULT_REGION", "garage"),
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )


def overwrite(name: str, size: int) -> None:
    """The child: says it is starting, then overwrites `name`."""
    import obstore

    target = store()
    print("starting", flush=True)
    obstore.put(target, name, os.urandom(size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        overwrite(args.child, args.size)
        return

    import obstore

    target = store()
    rng = random.Random(args.seed)
    prefix = f"torn-overwrite/{os.getpid()}-{time.time_ns()}"
    lost = replaced = 0
    for round_number in range(args.rounds):
        name = f"{prefix}/{round_number}"
        obstore.put(target, name, b"A" * args.size)
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--size", str(args.size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait()
        found = None
        for _ in range(3):
            try:
                found = bytes(obstore.get(target, name).bytes())
                break
            except FileNotFoundError:
                time.sleep(0.5)
        if found is None:
            lost += 1
            print(f"round {round_number}: {name} is gone", flush=True)
        elif found[:1] != b"A":
            replaced += 1
    print(
        f"{args.rounds} interrupted overwrites of {args.size} B: {lost} left no object, "
        f"{replaced} landed, {args.rounds - lost - replaced} left the old object"
    )
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
