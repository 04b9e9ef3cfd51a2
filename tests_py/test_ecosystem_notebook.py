"""The pandas and zarr example notebook runs headless (as CI runs it) without a failing cell."""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "ecosystem.ipynb"


def test_ecosystem_notebook_executes(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError if a cell fails
    text = "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "parquet round trip equal: True" in text
    assert "read back equal: True" in text
    assert "['tables/weather.csv', 'tables/weather.parquet']" in text
    found = re.search(r"(\d+) chunks in (\d+) pads of 64 KiB", text)
    assert found is not None, text
    chunks, pads = int(found[1]), int(found[2])
    assert chunks == 1000
    assert pads <= 17  # 1,000 KiB of chunks fill 16 pads of 64 KiB
