"""The three zarr stores Z2 and G1 compare, opened the same way by the
process that writes an array and by a fresh one that reads it back:
anthill (`anthill.zarr.AnthillStore`), zarr's own store for the place (a
folder's `LocalStore`, or `ObjectStore` over obstore's `S3Store`) and
icechunk (a repository on the same folder or bucket).

Run as a script, it is that fresh reader: `zarr_sides.py SIDE PLACE CHUNKS
CHUNK_BYTES` opens the array, reads it whole with one `array[:]`, checks it
and prints one JSON line: the seconds from opening to the end of the read,
and the bytes read meanwhile (see `bytes_read`), counted the same way for
every side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).parent))

from common import PAD_SIZE, SECRET

SIDES = ("anthill", "zarr", "icechunk")


def array_data(chunks: int, chunk_bytes: int, start: int = 0) -> np.ndarray:
    """The array written: random numbers drawn from seed `start`. New in
    each round: Garage keeps one copy per content, so a side writing an
    earlier round's chunks would write nothing. And incompressible: Garage
    compresses its blocks (zstd), which shrank the peers' plaintext chunks
    of consecutive numbers 8 times while anthill's sealed pads cannot
    shrink, so the rows measured Garage's compressor, not the stores."""
    return np.random.default_rng(start).random(chunks * chunk_bytes // 8)


def s3_settings() -> dict[str, str]:
    """The Garage bucket, endpoint and region of `ANTHILL_TEST_S3_URL`."""
    from urllib.parse import parse_qsl

    url = os.environ["ANTHILL_TEST_S3_URL"]
    base, _, query = url.partition("?")
    options = dict(parse_qsl(query))
    return {
        "base": base.rstrip("/"),
        "query": query,
        "bucket": base.removeprefix("s3://").split("/", 1)[0],
        "endpoint": options.get("endpoint") or os.environ["AWS_ENDPOINT_URL"],
        "region": options.get("region", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
    }


class Opened:
    """A side's zarr store on `place` (a folder path, or `s3:<prefix>`), and
    what finishes a write (icechunk's commit, anthill's close)."""

    def __init__(self, side: str, place: str, writing: bool) -> None:
        self.side, self.place, self.writing = side, place, writing
        self.anthill: Any = None
        self.session: Any = None
        self.store = self._open()

    def _open(self) -> Any:
        on_s3 = self.place.startswith("s3:")
        prefix = self.place.removeprefix("s3:")
        if self.side == "anthill":
            import anthill
            from anthill.zarr import AnthillStore

            if on_s3:
                s3 = s3_settings()
                url = f"{s3['base']}/{prefix}?{s3['query']}"
            else:
                url = Path(self.place).as_uri()
            self.anthill = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
            return AnthillStore(self.anthill)
        if self.side == "zarr":
            if not on_s3:
                return zarr.storage.LocalStore(self.place, read_only=not self.writing)
            from obstore.store import S3Store

            s3 = s3_settings()
            s3store = S3Store(
                s3["bucket"],
                prefix=prefix,
                endpoint=s3["endpoint"],
                region=s3["region"],
                client_options={"allow_http": s3["endpoint"].startswith("http://")},
            )
            return zarr.storage.ObjectStore(s3store, read_only=not self.writing)
        import icechunk

        if on_s3:
            s3 = s3_settings()
            storage = icechunk.s3_storage(
                bucket=s3["bucket"],
                prefix=prefix,
                endpoint_url=s3["endpoint"],
                region=s3["region"],
                allow_http=True,
                access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                force_path_style=True,
            )
        else:
            storage = icechunk.local_filesystem_storage(self.place)
        if self.writing:
            repo = icechunk.Repository.create(storage)
            self.session = repo.writable_session("main")
        else:
            self.session = icechunk.Repository.open(storage).readonly_session("main")
        return self.session.store

    def finish(self) -> None:
        """Makes the write visible and durable for a fresh process."""
        if self.session is not None and self.writing:
            self.session.commit("write")
        if self.anthill is not None:
            self.anthill.close()


def write(side: str, place: str, data: np.ndarray, chunk_bytes: int) -> float:
    """Seconds to create the array and write it whole, finish included."""
    started = time.perf_counter()
    opened = Opened(side, place, writing=True)
    array = zarr.create_array(
        opened.store,
        shape=data.shape,
        chunks=(chunk_bytes // 8,),
        dtype=data.dtype,
        compressors=None,
    )
    array[:] = data
    opened.finish()
    return time.perf_counter() - started


def bytes_read(place: str) -> int:
    """On a folder, the bytes this process has read (`rchar`); on Garage,
    the bytes its nodes have read from their disks (`block_bytes_read` of
    each node's admin `/metrics`, 3 ports above its S3 API): a client's
    socket reads are not in `rchar`."""
    if not place.startswith("s3:"):
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        return 0
    import re
    import urllib.request

    total = 0
    for endpoint in os.environ.get("ANTHILL_TEST_S3_ENDPOINTS", "").split():
        host, port = endpoint.rsplit(":", 1)
        with urllib.request.urlopen(f"{host}:{int(port) + 3}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        found = re.search(r"^block_bytes_read (\d+)", text, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


def read_in_this_process(
    side: str, place: str, chunks: int, chunk_bytes: int, start: int = 0
) -> dict[str, Any]:
    expected = array_data(chunks, chunk_bytes, start)
    before, started = bytes_read(place), time.perf_counter()
    opened = Opened(side, place, writing=False)
    got = zarr.open_array(opened.store, mode="r")[:]
    seconds = time.perf_counter() - started
    fetched = bytes_read(place) - before
    if opened.anthill is not None:
        opened.anthill.close()
    assert np.array_equal(got, expected), f"{side} read back other data"
    return {"read_s": seconds, "bytes_read": fetched}


def read_in_fresh_process(
    side: str, place: str, chunks: int, chunk_bytes: int, start: int = 0
) -> dict[str, Any]:
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, side, place, str(chunks), str(chunk_bytes), str(start)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading {side} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    side, place, chunks, chunk_bytes, start = sys.argv[1:6]
    print(json.dumps(read_in_this_process(side, place, int(chunks), int(chunk_bytes), int(start))))
