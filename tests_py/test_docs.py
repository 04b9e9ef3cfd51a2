"""Every snippet of the README and of docs/ runs as written, in order.

Each document is one test: its fenced ```python blocks run in one namespace
(as a user pasting them into one Python session would), its ```sh / ```bash
blocks under ``bash -eu -o pipefail`` with the installed ``anthill`` command,
all in a fresh folder with fresh user folders (no key file, no default store,
no ``$ANTHILL_SECRET``): a fresh machine.

Markers, an HTML comment on the line before a block (blank lines between
allowed):

- ``<!-- not run: REASON -->``: the block is not run (it installs software,
  starts services, or needs a machine the tests do not have). Used sparingly,
  always with its reason.
- ``<!-- needs: s3 -->``: the block uses the Garage cluster that
  ``eval "$(scripts/garage.sh start 3)"`` describes (``$ANTHILL_TEST_S3_URL``
  and the ``AWS_*`` variables). Each document gets a fresh prefix of the
  cluster's bucket in ``$ANTHILL_TEST_S3_URL``, as a fresh ``start`` gives.
  Without the cluster these blocks are skipped, as the S3 tests are
  (``tests_py/test_s3.py``); CI always runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = {"python": "python", "sh": "sh", "bash": "sh"}
S3_URL = os.environ.get("ANTHILL_TEST_S3_URL", "")

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(not run|needs):\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced block of a document."""

    language: str  # "python" or "sh"
    code: str
    line: int  # of its opening fence, 1-based
    skip_reason: str | None
    needs_s3: bool


def blocks_of(path: Path) -> list[Block]:
    """The runnable blocks of a Markdown file, with their markers."""
    found: list[Block] = []
    marker: tuple[str, str] | None = None
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is None:
            matched = _MARKER.match(line)
            if matched:
                marker = (matched.group(1), matched.group(2))
            elif line.strip():
                marker = None
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        language = RUN_LANGUAGES.get(fence.group(1))
        if language is not None:
            kind, detail = marker or ("", "")
            if kind == "not run" and not detail:
                raise AssertionError(f"{path}:{index + 1}: `not run` needs its reason")
            found.append(
                Block(
                    language=language,
                    code="\n".join(lines[index + 1 : end]) + "\n",
                    line=index + 1,
                    skip_reason=detail if kind == "not run" else None,
                    needs_s3=kind == "needs" and detail == "s3",
                )
            )
        marker = None
        index = end + 1
    return found


def fresh_s3_url() -> str:
    """``$ANTHILL_TEST_S3_URL`` with a fresh prefix below its own."""
    base, _, query = S3_URL.partition("?")
    options = dict(parse_qsl(query))
    url = f"{base.rstrip('/')}/docs-{uuid.uuid4().hex}"
    return f"{url}?{urlencode(options, safe=':/')}" if options else url


def run_sh(block: Block, where: str, cwd: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(
        ["bash", "-eu", "-o", "pipefail", "-c", block.code],
        check=False,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{where} failed (exit {result.returncode}):\n{block.code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_snippet_runs_as_written(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = blocks_of(ROOT / document)
    # A fresh machine: the user folders are fresh (conftest), and nothing
    # names a secret or a store.
    monkeypatch.delenv("ANTHILL_SECRET", raising=False)
    monkeypatch.delenv("ANTHILL_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    if S3_URL:
        monkeypatch.setenv("ANTHILL_TEST_S3_URL", fresh_s3_url())
    namespace: dict[str, object] = {"__name__": "__doc__"}
    without_s3 = []
    for block in blocks:
        where = f"{document}:{block.line}"
        if block.skip_reason is not None:
            continue
        if block.needs_s3 and not S3_URL:
            without_s3.append(where)
            continue
        if block.language == "python":
            code = compile(block.code, where, "exec")
            exec(code, namespace)  # noqa: S102 - running the docs is the point
        else:
            run_sh(block, where, tmp_path)
    if without_s3:
        pytest.skip(
            f"every other block ran; {', '.join(without_s3)} need ANTHILL_TEST_S3_URL: run "
            '`eval "$(scripts/garage.sh start 3)"` first (CI always does)'
        )


def test_the_readmes_python_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pasted again into a new session, the README's Python still runs: what
    it stores again it stores with ``overwrite=True``."""
    monkeypatch.delenv("ANTHILL_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    blocks = [
        block
        for block in blocks_of(ROOT / "README.md")
        if block.language == "python" and block.skip_reason is None and not block.needs_s3
    ]
    for _ in range(2):
        namespace: dict[str, object] = {"__name__": "__doc__"}
        for block in blocks:
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102


def test_blocks_are_found_with_their_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- not run: installs things -->\n```sh\npip install x\n```\n\n"
        "<!-- needs: s3 -->\n\n```python\nprint(1)\n```\n"
        "```rust\nfn main() {}\n```\n```bash\necho hi\n```\n"
    )
    blocks = blocks_of(page)
    assert [(b.language, b.skip_reason, b.needs_s3, b.line) for b in blocks] == [
        ("sh", "installs things", False, 4),
        ("python", None, True, 10),
        ("sh", None, False, 16),
    ]
    page.write_text("<!-- not run: -->\n```sh\ntrue\n```\n")
    with pytest.raises(AssertionError, match="needs its reason"):
        blocks_of(page)
