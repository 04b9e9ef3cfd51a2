"""A picture of a store's pads: one cell per pad, shaded by how full it is,
with the totals and the longest free run. ``Store._repr_html_`` draws it for
notebooks, ``anthill stats --map`` with terminal characters. Both read only
the store's memory map (``NativeStore.pad_usage``), never the backend."""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["PadPicture", "to_html", "to_text"]

# Terminal shades, from empty to full.
_SHADES = "·░▒▓█"
_CELLS_PER_LINE = 64


@dataclass(frozen=True, slots=True)
class PadPicture:
    """``pads`` as ``(ordinal, used bytes)`` of ``pad_size``-byte pads."""

    url: str
    pad_size: int
    pads: list[tuple[int, int]]
    largest_free: int

    @property
    def used(self) -> int:
        return sum(used for _, used in self.pads)

    @property
    def total(self) -> int:
        return self.pad_size * len(self.pads)

    def totals(self) -> str:
        """One line: pads, bytes used of total, the longest free run."""
        share = f" ({100 * self.used / self.total:.0f}%)" if self.total else ""
        return (
            f"{len(self.pads)} pads of {_size(self.pad_size)}: "
            f"{_size(self.used)} used of {_size(self.total)}{share}, "
            f"largest free run {_size(self.largest_free)}"
        )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # unreachable


def _fill(used: int, pad_size: int) -> float:
    return used / pad_size if pad_size else 0.0


def to_html(picture: PadPicture) -> str:
    """A ``<table>`` of one ``<td class="anthill-pad">`` per pad, darker the
    fuller, each titled with its ordinal and fill, then the totals."""
    cells = []
    for ordinal, used in picture.pads:
        fill = _fill(used, picture.pad_size)
        # From a pale to a deep blue: lightness falls as the pad fills.
        lightness = 95 - round(60 * fill)
        title = f"pad {ordinal}: {_size(used)} used ({100 * fill:.0f}%)"
        cells.append(
            f'<td class="anthill-pad" title="{html.escape(title)}" '
            f'style="width:10px;height:10px;padding:0;border:1px solid #ccc;'
            f'background:hsl(215,70%,{lightness}%)"></td>'
        )
    rows = [
        "<tr>" + "".join(cells[i : i + _CELLS_PER_LINE]) + "</tr>"
        for i in range(0, len(cells), _CELLS_PER_LINE)
    ]
    return (
        '<div class="anthill-store">'
        f"<div><b>anthill store</b> {html.escape(picture.url)}</div>"
        '<table style="border-collapse:collapse;margin:4px 0">'
        + "".join(rows)
        + "</table>"
        + f"<div>{html.escape(picture.totals())}</div></div>"
    )


def to_text(picture: PadPicture) -> str:
    """Lines of one character per pad (``·`` empty to ``█`` full), then the totals."""
    top = len(_SHADES) - 1
    chars = []
    for _, used in picture.pads:
        fill = _fill(used, picture.pad_size)
        # Empty only when nothing is used, full only when nothing is free.
        level = 0 if used == 0 else top if used >= picture.pad_size else 1 + int(fill * (top - 1))
        chars.append(_SHADES[min(level, top)])
    lines = ["".join(chars[i : i + _CELLS_PER_LINE]) for i in range(0, len(chars), _CELLS_PER_LINE)]
    legend = (
        f"{_SHADES[0]} empty  {_SHADES[1]}{_SHADES[2]}{_SHADES[3]} partly used  {_SHADES[4]} full"
    )
    return "\n".join([*lines, picture.totals(), legend])
