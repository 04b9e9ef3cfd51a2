"""Smoke test of an installed anthill (a wheel or the sdist), run by scripts/wheel.sh.

    python scripts/wheel_smoke.py README.md

Run it with the interpreter of the virtual environment that anthill was installed
into, from outside the repository, so that ``import anthill`` finds the installed
package and not ``python/anthill``. Every store, key file and data folder lives in
a temporary folder. It checks what a user does first: the README's ``put`` (and
a ``get`` of it) through the command line, the synchronous and asyncio API, and
the fsspec and zarr entry points. zarr is checked where anthill's ``zarr`` extra
installs it: anthill.zarr needs zarr 3.1, which needs Python 3.11, so on 3.10
the check says it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"wheel_smoke: FAILED: {what}")
    print(f"wheel_smoke: ok: {what}")


def check_installed() -> None:
    import anthill
    import anthill._anthill

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    extension = Path(anthill._anthill.__file__).resolve()
    check(
        extension.is_relative_to(site_packages),
        f"anthill {anthill.__version__} is the installed one ({extension})",
    )


def check_cli(readme: Path, work: Path) -> None:
    """The README's first command, and a get of what it stored."""
    put = [sys.executable, "-m", "anthill", "put", "readme", str(readme), "--yes"]
    subprocess.run(put, check=True, cwd=work)
    copy = work / "readme.out"
    get = [sys.executable, "-m", "anthill", "get", "readme", "-o", str(copy)]
    subprocess.run(get, check=True, cwd=work)
    check(copy.read_bytes() == readme.read_bytes(), "anthill put and get of README.md")


def check_api(url: str) -> None:
    import anthill

    with anthill.open(url, max_new_pads=4) as store:
        store["sync"] = b"sync value"
        check(store.fetch_item("sync") == b"sync value", "store_item and fetch_item")

        async def roundtrip() -> bytes:
            await store.store_item_async("async", b"async value")
            return await store.fetch_item_async("async")

        check(asyncio.run(roundtrip()) == b"async value", "store_item_async, fetch_item_async")


def check_fsspec(url: str) -> None:
    import anthill
    import fsspec
    from anthill.fsspec import AnthillFileSystem

    # An open store, closed here: a store the filesystem opened from a URL
    # would be written back at exit, after its temporary folder is gone.
    with anthill.open(url, max_new_pads=4) as items:
        fs = fsspec.filesystem("anthill", store=items)
        check(isinstance(fs, AnthillFileSystem), "fsspec finds anthill:// by its entry point")
        with fsspec.open("anthill://fs/a.txt", "wb", store=items) as file:
            file.write(b"through fsspec")
        check(fs.cat_file("fs/a.txt") == b"through fsspec", "fsspec write and read")


def check_zarr(url: str) -> None:
    if sys.version_info < (3, 11):
        # The zarr extra is empty there: anthill.zarr needs zarr 3.1, which needs 3.11.
        print(f"wheel_smoke: skipped: zarr 3.1 needs Python 3.11, this is {sys.version.split()[0]}")
        return
    import anthill
    import numpy as np
    import zarr
    from anthill.zarr import AnthillStore

    with anthill.open(url, max_new_pads=4) as items:
        array = zarr.create_array(
            AnthillStore(items, prefix="z"), shape=(64, 64), chunks=(16, 16), dtype="i4"
        )
        array[:] = np.arange(64 * 64, dtype="i4").reshape(64, 64)
        reread = zarr.open_array(AnthillStore(items, prefix="z"), mode="r")
        check(
            bool((reread[:] == np.arange(64 * 64).reshape(64, 64)).all()),
            f"zarr {zarr.__version__} array through anthill.zarr.AnthillStore",
        )


def main() -> None:
    readme = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="anthill-smoke-") as tmp:
        work = Path(tmp)
        # The default store, the key file and the state all in the temporary folder.
        for variable in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            os.environ[variable] = str(work / variable.lower())
        os.environ.pop("ANTHILL_STORE", None)
        os.environ["ANTHILL_SECRET"] = "wheel smoke test passphrase"
        check_installed()
        check_cli(readme, work)
        url = (work / "store").as_uri()
        check_api(url)
        check_fsspec(url)
        check_zarr(url)
    print(f"wheel_smoke: passed on Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
